-- Budgets created through the REST API / CLI (file budgets are not stored: the file is read at start and on
-- reload). Money is numeric: exact, never float.
CREATE TABLE llm_budgets (
    name        text        PRIMARY KEY,
    limit_usd   numeric     NOT NULL CHECK (limit_usd > 0),
    period      text        NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly', 'fixed')),
    scope       jsonb       NOT NULL DEFAULT '{}',
    thresholds  numeric[]   NOT NULL DEFAULT '{0.8,1.0}',
    reset_day   integer     NOT NULL DEFAULT 1,
    timezone    text        NOT NULL DEFAULT 'UTC',
    start_date  date,
    end_date    date,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Budget spend of user-scoped budgets: whole days from the user rollup, the edges of the window from raw calls.
CREATE INDEX llm_rollup_user_day_user_idx ON llm_rollup_user_day (user_id, bucket);
CREATE INDEX llm_calls_user_ts_idx ON llm_calls (user_id, ts);
-- Tag-scoped budgets: containment on tags; partial, so untagged calls cost nothing to index.
CREATE INDEX llm_calls_tags_idx ON llm_calls USING gin (tags jsonb_path_ops) WHERE tags <> '{}'::jsonb;
