-- Prompt similarity at the scale of real traffic. A prompt's SimHash changes from call to call with its variable
-- part (a 300-word system prompt with a 20-word question: 1,958 distinct signatures in 2,000 calls), so a rollup
-- keyed by the signature grows with the calls. The signature rollup is keyed by month, project, feature, model
-- and template instead, and counts, for each of the 64 signature bits, the calls whose signature sets it: the
-- bitwise majority (the group's centroid) is the SimHash of what its prompts have in common, and prompt families
-- are found among centroids (insights/similarity.py). The table keeps its name.
DROP TABLE llm_rollup_signature_day;
CREATE TABLE llm_rollup_signature_day (
    bucket               timestamptz      NOT NULL,  -- the month
    project              text             NOT NULL,
    feature              text             NOT NULL,
    model                text             NOT NULL,
    template_fingerprint text             NOT NULL,
    calls                bigint           NOT NULL,
    errors               bigint           NOT NULL,
    input_tokens         bigint           NOT NULL,
    cache_read_tokens    bigint           NOT NULL,
    output_tokens        bigint           NOT NULL,
    cost_usd             numeric          NOT NULL,
    duration_s           double precision NOT NULL,
    -- bits[k + 1]: calls whose signature has bit k set, k = 0 the most significant (get_bit's order)
    bits                 bigint[]         NOT NULL,
    PRIMARY KEY (bucket, project, feature, model, template_fingerprint)
);
WITH signed AS (
    SELECT date_trunc('month', ts) AS bucket, project, feature, model, template_fingerprint, status, input_tokens,
           cache_read_tokens, output_tokens, cost_usd, duration_s, ('x' || prompt_simhash)::bit(64) AS sig
    FROM llm_calls WHERE prompt_simhash <> ''
), sums AS (
    SELECT bucket, project, feature, model, template_fingerprint, count(*) AS calls,
           count(*) FILTER (WHERE status = 'error') AS errors, sum(input_tokens) AS input_tokens,
           sum(cache_read_tokens) AS cache_read_tokens, sum(output_tokens) AS output_tokens,
           coalesce(sum(cost_usd), 0) AS cost_usd, sum(duration_s) AS duration_s
    FROM signed GROUP BY 1, 2, 3, 4, 5
), per_bit AS (
    SELECT bucket, project, feature, model, template_fingerprint, k, sum(get_bit(sig, k)) AS n
    FROM signed CROSS JOIN generate_series(0, 63) AS k GROUP BY 1, 2, 3, 4, 5, 6
), bits AS (
    SELECT bucket, project, feature, model, template_fingerprint, array_agg(n::bigint ORDER BY k) AS bits
    FROM per_bit GROUP BY 1, 2, 3, 4, 5
)
INSERT INTO llm_rollup_signature_day
SELECT s.*, b.bits FROM sums s JOIN bits b USING (bucket, project, feature, model, template_fingerprint);

DO $grafana$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'llmmeter_grafana') THEN
        EXECUTE format('GRANT SELECT ON %I.llm_rollup_signature_day TO llmmeter_grafana', current_schema());
    END IF;
END
$grafana$;
