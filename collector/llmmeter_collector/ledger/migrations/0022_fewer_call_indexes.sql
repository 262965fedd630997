-- Every index on llm_calls costs each ingested call about 2 us; drop the three that no query needs.
-- * Time-ordered pages (GET /api/v1/calls) now sort on (ts, trace_id, span_id), the ledger's unique key, read
--   backwards; exports read it forwards. llm_calls_ts_idx (ts DESC) and llm_calls_page_idx (ts DESC, span_id DESC,
--   trace_id DESC) only repeated it. Time-order cursors issued before this migration are refused (calls.py).
-- * llm_calls_user_idx (user_id, ts DESC) WHERE user_id <> '' repeats llm_calls_user_ts_idx (user_id, ts) of 0010,
--   which serves user-filtered pages (read backwards) and user-scoped budgets.
-- What stays, each for queries no other index answers without reading a whole time range:
--   the unique key (ts, trace_id, span_id)    writes (idempotency), time-ordered pages, exports, time ranges
--   llm_calls_cost_page_idx                   most expensive first (order=cost, Grafana's calls explorer)
--   llm_calls_project_page_idx                a project's (or a project-limited API key's) calls, when they are
--                                             a small share of the ledger: pages in both orders, exports, insights
--   llm_calls_user_ts_idx                     a user's calls: pages, user-scoped budgets
--   llm_calls_tags_idx                        tag-scoped budgets (partial: untagged calls cost nothing)
DROP INDEX IF EXISTS llm_calls_ts_idx;
DROP INDEX IF EXISTS llm_calls_page_idx;
DROP INDEX IF EXISTS llm_calls_user_idx;
