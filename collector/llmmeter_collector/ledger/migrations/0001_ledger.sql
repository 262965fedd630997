-- The per-call ledger (partitioned by day so old data is dropped by partition) and additive rollups.
-- Money is numeric: exact, never float.

CREATE TABLE llm_calls (
    ts                    timestamptz      NOT NULL,
    trace_id              text             NOT NULL,
    span_id               text             NOT NULL,
    parent_span_id        text             NOT NULL DEFAULT '',
    service_name          text             NOT NULL DEFAULT '',
    project               text             NOT NULL DEFAULT '',
    environment           text             NOT NULL DEFAULT '',
    feature               text             NOT NULL DEFAULT '',
    user_id               text             NOT NULL DEFAULT '',
    session_id            text             NOT NULL DEFAULT '',
    experiment            text             NOT NULL DEFAULT '',
    variant               text             NOT NULL DEFAULT '',
    tags                  jsonb            NOT NULL DEFAULT '{}',
    provider              text             NOT NULL,
    operation             text             NOT NULL,
    request_model         text             NOT NULL,
    response_model        text             NOT NULL DEFAULT '',
    model                 text             NOT NULL,
    response_id           text             NOT NULL DEFAULT '',
    input_tokens          bigint           NOT NULL DEFAULT 0,
    output_tokens         bigint           NOT NULL DEFAULT 0,
    cache_read_tokens     bigint           NOT NULL DEFAULT 0,
    cache_write_tokens    bigint           NOT NULL DEFAULT 0,
    cache_write_1h_tokens bigint           NOT NULL DEFAULT 0,
    reasoning_tokens      bigint           NOT NULL DEFAULT 0,
    input_audio_tokens    bigint           NOT NULL DEFAULT 0,
    output_audio_tokens   bigint           NOT NULL DEFAULT 0,
    usage_missing         boolean          NOT NULL DEFAULT false,
    cost_usd              numeric,                     -- NULL: no price known (unpriced, never $0)
    cost_input_usd        numeric,
    cost_cache_read_usd   numeric,
    cost_cache_write_usd  numeric,
    cost_output_usd       numeric,
    cost_input_audio_usd  numeric,
    cost_output_audio_usd numeric,
    cost_request_usd      numeric,
    price_source          text             NOT NULL DEFAULT '',
    reported_cost_usd     numeric,
    duration_s            double precision NOT NULL DEFAULT 0,
    ttfc_s                double precision,
    status                text             NOT NULL DEFAULT 'ok',
    error_type            text             NOT NULL DEFAULT '',
    retries               integer          NOT NULL DEFAULT 0,
    streaming             boolean          NOT NULL DEFAULT false,
    batch                 boolean          NOT NULL DEFAULT false,
    service_tier          text             NOT NULL DEFAULT '',
    prompt_fingerprint    text             NOT NULL DEFAULT '',
    UNIQUE (ts, trace_id, span_id)
) PARTITION BY RANGE (ts);

CREATE INDEX llm_calls_ts_idx ON llm_calls (ts DESC);
CREATE INDEX llm_calls_cost_idx ON llm_calls (cost_usd DESC NULLS LAST);

-- Rollups: one row per bucket and dimension set, updated in the transaction that inserts the calls.
CREATE TABLE llm_rollup_minute (
    bucket           timestamptz NOT NULL,
    project          text        NOT NULL,
    environment      text        NOT NULL,
    provider         text        NOT NULL,
    model            text        NOT NULL,
    feature          text        NOT NULL,
    operation        text        NOT NULL,
    status           text        NOT NULL,
    calls            bigint      NOT NULL,
    unpriced_calls   bigint      NOT NULL,
    input_tokens     bigint      NOT NULL,
    output_tokens    bigint      NOT NULL,
    cache_read_tokens  bigint    NOT NULL,
    cache_write_tokens bigint    NOT NULL,
    reasoning_tokens bigint      NOT NULL,
    cost_usd         numeric     NOT NULL,
    duration_s       double precision NOT NULL,
    PRIMARY KEY (bucket, project, environment, provider, model, feature, operation, status)
);

CREATE TABLE llm_rollup_hour (LIKE llm_rollup_minute INCLUDING ALL);

CREATE TABLE llm_rollup_user_day (
    bucket           timestamptz NOT NULL,
    project          text        NOT NULL,
    user_id          text        NOT NULL,
    feature          text        NOT NULL,
    calls            bigint      NOT NULL,
    unpriced_calls   bigint      NOT NULL,
    input_tokens     bigint      NOT NULL,
    output_tokens    bigint      NOT NULL,
    cost_usd         numeric     NOT NULL,
    PRIMARY KEY (bucket, project, user_id, feature)
);
