-- The token classes an instrumentation is known not to report for a call (dialects.py), comma-separated, e.g.
-- 'cache_read,reasoning' for the official openai-v2 on chat completions. Such a call also has usage_missing, so
-- every query on usage_missing counts it; this says which classes, for `llmmeter doctor` and `status`.
ALTER TABLE llm_calls ADD COLUMN IF NOT EXISTS usage_incomplete text NOT NULL DEFAULT '';
