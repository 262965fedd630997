-- "Most expensive calls" pages (GET /api/v1/calls?order=cost) walk (cost_usd, ts, span_id, trace_id) downwards:
-- with the whole key in the index, each day partition is read in that order and merged, and a page stops
-- after 50 rows instead of sorting every call of the time range. It supersedes the cost-only index of 0001.
CREATE INDEX IF NOT EXISTS llm_calls_cost_page_idx
    ON llm_calls (cost_usd DESC NULLS LAST, ts DESC, span_id DESC, trace_id DESC);
DROP INDEX IF EXISTS llm_calls_cost_idx;
