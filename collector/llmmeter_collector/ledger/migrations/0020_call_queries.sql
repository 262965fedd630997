-- Indexes for the REST API's call pages and exports (api.py / calls.py).
-- Keyset pagination walks (ts, span_id, trace_id) newest first; a project filter (and an API key limited to
-- projects) uses the second index; a user filter the third. Feature/model/status filters ride the first.
CREATE INDEX IF NOT EXISTS llm_calls_page_idx ON llm_calls (ts DESC, span_id DESC, trace_id DESC);
CREATE INDEX IF NOT EXISTS llm_calls_project_page_idx ON llm_calls (project, ts DESC, span_id DESC, trace_id DESC);
CREATE INDEX IF NOT EXISTS llm_calls_user_idx ON llm_calls (user_id, ts DESC) WHERE user_id <> '';
-- Summaries, budgets and anomalies filter the hourly rollup by project and time.
CREATE INDEX IF NOT EXISTS llm_rollup_hour_project_idx ON llm_rollup_hour (project, bucket);
