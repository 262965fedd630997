-- Calls Postgres refused for their data (SQLSTATE classes 22, 23, 54: e.g. a value too big for an index row).
-- The writer isolates them (the rest of their batch commits) and keeps them here, as the call's JSON with the
-- error, so a user can inspect them and replay them after a fix: `llmmeter db dead-letter list|replay`.
CREATE TABLE IF NOT EXISTS llm_calls_dead_letter (
    id         bigserial   PRIMARY KEY,
    call_key   text        NOT NULL UNIQUE,   -- sha256 of (start time, trace id, span id): once per call
    ts         timestamptz NOT NULL,          -- the call's start time
    project    text        NOT NULL DEFAULT '',  -- the first 200 characters, for listing
    error      text        NOT NULL,          -- Postgres' message and SQLSTATE at the last attempt
    sqlstate   text        NOT NULL DEFAULT '',
    failed_at  timestamptz NOT NULL DEFAULT now(),
    attempts   integer     NOT NULL DEFAULT 1,
    call       text        NOT NULL           -- the call as JSON (the spool's format); call::jsonb to query it
);
