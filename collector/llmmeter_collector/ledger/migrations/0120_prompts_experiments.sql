-- Prompts and experiments (insights/prompts.py, insights/experiments.py, insights/similarity.py): the prompt's name,
-- version, template fingerprint and similarity signature on every call, and daily rollups that answer the prompt,
-- experiment and similarity questions without reading the calls (written with the calls, like the other rollups).
ALTER TABLE llm_calls
    ADD COLUMN prompt_name          text NOT NULL DEFAULT '',
    ADD COLUMN prompt_version       text NOT NULL DEFAULT '',
    ADD COLUMN template_fingerprint text NOT NULL DEFAULT '',
    ADD COLUMN prompt_simhash       text NOT NULL DEFAULT '';
ALTER TABLE llm_call_duplicates
    ADD COLUMN prompt_name          text NOT NULL DEFAULT '',
    ADD COLUMN prompt_version       text NOT NULL DEFAULT '',
    ADD COLUMN template_fingerprint text NOT NULL DEFAULT '',
    ADD COLUMN prompt_simhash       text NOT NULL DEFAULT '';

-- One row per UTC day, project, feature, prompt (name, explicit version, template) and model.
CREATE TABLE llm_rollup_prompt_day (
    bucket               timestamptz      NOT NULL,
    project              text             NOT NULL,
    feature              text             NOT NULL,
    prompt_name          text             NOT NULL,
    prompt_version       text             NOT NULL,
    template_fingerprint text             NOT NULL,
    model                text             NOT NULL,
    calls                bigint           NOT NULL,
    errors               bigint           NOT NULL,
    unpriced_calls       bigint           NOT NULL,
    input_tokens         bigint           NOT NULL,
    output_tokens        bigint           NOT NULL,
    cost_usd             numeric          NOT NULL,
    duration_s           double precision NOT NULL,
    first_seen           timestamptz      NOT NULL,
    last_seen            timestamptz      NOT NULL,
    PRIMARY KEY (bucket, project, feature, prompt_name, prompt_version, template_fingerprint, model)
);

-- One row per UTC day, experiment and variant: the sums and sums of squares Welch's t-test needs, and a latency
-- histogram (bounds: ledger/storage.py LATENCY_BOUNDS).
CREATE TABLE llm_rollup_experiment_day (
    bucket         timestamptz      NOT NULL,
    project        text             NOT NULL,
    experiment     text             NOT NULL,
    variant        text             NOT NULL,
    calls          bigint           NOT NULL,
    errors         bigint           NOT NULL,
    unpriced_calls bigint           NOT NULL,
    input_tokens   bigint           NOT NULL,
    output_tokens  bigint           NOT NULL,
    cost_usd       numeric          NOT NULL,
    cost_sq        numeric          NOT NULL,  -- sum of each call's cost squared
    duration_s     double precision NOT NULL,
    duration_sq    double precision NOT NULL,
    hist           bigint[]         NOT NULL,
    PRIMARY KEY (bucket, project, experiment, variant)
);

-- One row per experiment, variant and end user over the experiment's whole life: the per-user comparison.
CREATE TABLE llm_rollup_experiment_user (
    project        text    NOT NULL,
    experiment     text    NOT NULL,
    variant        text    NOT NULL,
    user_id        text    NOT NULL,
    calls          bigint  NOT NULL,
    unpriced_calls bigint  NOT NULL,
    cost_usd       numeric NOT NULL,
    PRIMARY KEY (experiment, variant, project, user_id)
);

-- One row per UTC month, project, feature, model and prompt signature (only calls that carry one): similarity is not
-- a day-by-day question, and a month of signed prompts stays a small table.
CREATE TABLE llm_rollup_signature_day (
    bucket         timestamptz      NOT NULL,
    project        text             NOT NULL,
    feature        text             NOT NULL,
    model          text             NOT NULL,
    simhash        text             NOT NULL,
    calls          bigint           NOT NULL,
    errors         bigint           NOT NULL,
    input_tokens   bigint           NOT NULL,
    cache_read_tokens bigint        NOT NULL,
    output_tokens  bigint           NOT NULL,
    cost_usd       numeric          NOT NULL,
    duration_s     double precision NOT NULL,
    PRIMARY KEY (bucket, project, feature, model, simhash)
);

DO $grafana$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'llmmeter_grafana') THEN
        EXECUTE format('GRANT SELECT ON %I.llm_rollup_prompt_day, %I.llm_rollup_experiment_day,'
                       ' %I.llm_rollup_experiment_user, %I.llm_rollup_signature_day TO llmmeter_grafana',
                       current_schema(), current_schema(), current_schema(), current_schema());
    END IF;
END
$grafana$;
