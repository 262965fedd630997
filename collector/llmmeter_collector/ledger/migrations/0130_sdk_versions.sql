-- Which instrumentation (scope) at which version sent each call, and the versions seen (insights/sdk_versions.py):
-- `llmmeter status` and /api/v1/sdk-versions list them and flag ones the collector no longer supports.
ALTER TABLE llm_calls ADD COLUMN scope_version text NOT NULL DEFAULT '';
ALTER TABLE llm_call_duplicates ADD COLUMN scope_version text NOT NULL DEFAULT '';

CREATE TABLE llm_sdk_versions (
    scope      text        NOT NULL,
    version    text        NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    calls      bigint      NOT NULL,
    PRIMARY KEY (scope, version)
);
