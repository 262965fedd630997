-- One priced call per provider call, however many instrumentations traced it (identity.py, storage.py).

-- The instrumentation scope that traced each call ("llmmeter.openai", "opentelemetry.instrumentation.openai_v2", ...).
ALTER TABLE llm_calls ADD COLUMN scope text NOT NULL DEFAULT '';

-- Which span holds each identified call: one row per call key (identity.py: a provider's response id, or a
-- trace's nested spans); the ledger's llm_calls has the span's row. Kept as long as the calls (retention deletes
-- by ts).
CREATE TABLE llm_call_identity (
    call_key      text        PRIMARY KEY,
    trace_id      text        NOT NULL,
    span_id       text        NOT NULL,
    ts            timestamptz NOT NULL,
    completeness  smallint    NOT NULL,
    prev_trace_id text,                   -- the holder the last update displaced (read back by that update)
    prev_span_id  text,
    prev_ts       timestamptz
);
CREATE INDEX llm_call_identity_ts_idx ON llm_call_identity (ts);

-- Spans of a call that another span already carries: stored for audit, never priced into a total or a rollup.
CREATE TABLE llm_call_duplicates (LIKE llm_calls INCLUDING DEFAULTS);
ALTER TABLE llm_call_duplicates
    ADD COLUMN duplicate_of text NOT NULL,                      -- the span id of the billable span
    ADD COLUMN received_at  timestamptz NOT NULL DEFAULT now(),
    ADD PRIMARY KEY (trace_id, span_id);
CREATE INDEX llm_call_duplicates_ts_idx ON llm_call_duplicates (ts);

DO $grafana$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'llmmeter_grafana') THEN
        EXECUTE format('GRANT SELECT ON %I.llm_call_duplicates TO llmmeter_grafana', current_schema());
    END IF;
END
$grafana$;
