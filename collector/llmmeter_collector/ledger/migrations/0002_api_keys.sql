-- API and ingest keys. Only the SHA-256 of a key is stored; the key itself is shown once, at creation.
CREATE TABLE llmmeter_api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    key_hash    text        NOT NULL UNIQUE,      -- hex SHA-256 of the whole key
    key_prefix  text        NOT NULL,             -- first characters, to recognise a key in listings
    role        text        NOT NULL CHECK (role IN ('ingest', 'viewer', 'admin')),
    projects    text[]      NOT NULL DEFAULT '{}', -- empty: every project
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE UNIQUE INDEX llmmeter_api_keys_active_name ON llmmeter_api_keys (name) WHERE revoked_at IS NULL;
