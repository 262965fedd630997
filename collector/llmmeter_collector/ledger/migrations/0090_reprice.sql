-- Retroactive repricing (ledger/reprice.py): every run, dry or not, is recorded with who asked, what it covered
-- and what it changed. A run's batches commit its progress (cursor, counts, dollars) with the calls and rollups
-- they changed, so a run cut off resumes from its cursor with nothing counted twice.
CREATE TABLE llm_reprice_runs (
    id              bigserial   PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    actor           text        NOT NULL,          -- "key 3 (root)", "no key" or "collector" (automatic)
    reason          text        NOT NULL,          -- manual | new_price
    dry_run         boolean     NOT NULL,
    range_from      timestamptz NOT NULL,
    range_to        timestamptz NOT NULL,          -- exclusive
    provider        text        NOT NULL DEFAULT '',
    model           text        NOT NULL DEFAULT '',
    project         text        NOT NULL DEFAULT '',
    projects        text[],                        -- the asking key's projects; NULL: every project
    only_unpriced   boolean     NOT NULL DEFAULT false,
    prices          text        NOT NULL DEFAULT '', -- the catalog version and overrides file it priced with
    status          text        NOT NULL DEFAULT 'running',  -- running | done | failed
    error           text        NOT NULL DEFAULT '',
    total_calls     bigint      NOT NULL DEFAULT 0, -- matching calls when the run started (for progress)
    examined        bigint      NOT NULL DEFAULT 0,
    changed         bigint      NOT NULL DEFAULT 0,
    newly_priced    bigint      NOT NULL DEFAULT 0, -- stored unpriced, priced by this run
    newly_unpriced  bigint      NOT NULL DEFAULT 0, -- stored priced, no price any more
    usd_before      numeric     NOT NULL DEFAULT 0, -- the changed calls' cost before (unpriced counts as 0)
    usd_after       numeric     NOT NULL DEFAULT 0, -- and after
    cursor_ts       timestamptz,                   -- the last call done, in (ts, trace_id, span_id) order
    cursor_trace_id text,
    cursor_span_id  text
);

-- What a run changed per UTC day, provider and model (a dry run: what it would change).
CREATE TABLE llm_reprice_changes (
    run_id         bigint  NOT NULL REFERENCES llm_reprice_runs (id) ON DELETE CASCADE,
    day            date    NOT NULL,
    provider       text    NOT NULL,
    model          text    NOT NULL,
    calls          bigint  NOT NULL,
    newly_priced   bigint  NOT NULL,
    newly_unpriced bigint  NOT NULL,
    usd_before     numeric NOT NULL,
    usd_after      numeric NOT NULL,
    PRIMARY KEY (run_id, day, provider, model)
);
