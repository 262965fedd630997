-- The audit log (ledger/audit.py): every authenticated read of call-level data and every change, who, when, what,
-- from where and the result. Append-only: no role can update, delete or truncate it, except the retention run's
-- own deletion of rows older than LLMMETER_AUDIT_RETENTION_DAYS (it sets llmmeter.audit_retention in its
-- transaction).
CREATE TABLE llm_audit_log (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,          -- "key 3 (root)", "no key" (keys not in use), "no valid key", "collector"
    role     text        NOT NULL DEFAULT '',
    projects text[],                        -- the key's projects; NULL: every project
    action   text        NOT NULL,          -- "GET /api/v1/calls", "POST /api/v1/keys", "retention", ...
    target   text        NOT NULL DEFAULT '', -- the path and query as asked, or what a run did
    client   text        NOT NULL DEFAULT '', -- the client's address
    status   integer     NOT NULL           -- the HTTP status; runs: 0 done, 1 failed
);
CREATE INDEX llm_audit_log_at_idx ON llm_audit_log (at);

CREATE FUNCTION llm_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('llmmeter.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'llm_audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER llm_audit_log_no_change BEFORE UPDATE OR DELETE ON llm_audit_log
    FOR EACH ROW EXECUTE FUNCTION llm_audit_log_append_only();
CREATE TRIGGER llm_audit_log_no_truncate BEFORE TRUNCATE ON llm_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION llm_audit_log_append_only();
