"""A local fake LLM provider that speaks the real OpenAI, Azure OpenAI, Anthropic and Gemini wire formats.

The demo and the test suite point the REAL provider SDKs (`openai`, `anthropic`, `google-genai`,
`langchain-*`) at it over HTTP, so instrumentation is exercised exactly as in production, without
network access or money, and every answer's token usage is known in advance::

    from llmmeter_collector.devtools.fakeprovider import FakeProvider

    with FakeProvider() as fake:                 # 127.0.0.1, a free port, a background thread
        openai.OpenAI(base_url=fake.openai_base_url, api_key="x")
        openai.AzureOpenAI(azure_endpoint=fake.url, api_key="x", api_version="2024-10-21")
        anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="x")
        genai.Client(api_key="x", http_options=fake.gemini_http_options)
        genai.Client(**fake.gemini_vertex_client_kwargs())   # Vertex AI mode, static OAuth token
        fake.requests                            # what arrived: method, path, json, headers, query
        fake.fail_next(status=429, count=2)      # the next 2 requests get a provider-format 429
        fake.reset()                             # forget requests, pending failures, files, batches
        fake.billed                              # the calls answered, as the usage and cost reports count them
        fake.bill_models_at("gpt-4o", "1.1")     # the cost reports bill a model at another price (reports.py)

`python -m llmmeter_collector.devtools.fakeprovider --port 8765` serves in the foreground until Ctrl-C/SIGTERM.

Token rules (deterministic; tests compute dollars from them)
-------------------------------------------------------------
* Input tokens = number of whitespace-separated words in all the request's text + 10 (once per request).
  "Text" is every message/content string and `text` part, system prompts and instructions included
  (OpenAI `messages`/`input`/`instructions`/`prompt`, Anthropic `system` + `messages` incl. tool results,
  Gemini `contents` + `systemInstruction`); tool schemas, tool-call arguments and images count nothing.
  Embeddings and count-tokens requests use the same rule over all their inputs (Vertex `:predict` puts
  the +10 on the first instance's `token_count`).
* Output tokens = 20, or the request's output limit if smaller (`max_tokens`, `max_completion_tokens`,
  `max_output_tokens`, Gemini `generationConfig.maxOutputTokens`).
* The answer text is "Fake answer w3 w4 ... wN", exactly as many words as visible output tokens (output
  minus reasoning; at most 1000 words). Streams send one word per chunk/delta. Structured output (OpenAI
  `response_format`/`text.format` json_schema, Anthropic `output_config.format`, Gemini
  `responseJsonSchema`/`responseSchema`) answers JSON filling every property with a placeholder of the
  right type ("fake", 0, false, one-item arrays), so `.parse()` helpers succeed.
* Tool calls: when the request offers function tools and its last message is a user turn whose own text
  contains the word "weather" (or header `x-fake-tool-call: 1`; `0` forbids), the answer is one call of
  the FIRST tool with placeholder arguments (`location` = "Paris" when the schema has it); finish reason
  `tool_calls` / `tool_use` / Gemini `STOP` with a `functionCall` part. A conversation ending in a tool
  result gets a text answer, so agent loops end.
* OpenAI `service_tier` is echoed back (default "default"); Anthropic reports `service_tier: standard`,
  or `batch` inside message batches.
* Batches (OpenAI `/v1/batches`, Anthropic `/v1/messages/batches`) complete at creation; headers sent
  with the create request (e.g. `x-fake-usage`) apply to every request in the batch.

Overrides (request headers)
---------------------------
* `x-fake-usage: {"input_tokens": 1200, "output_tokens": 300, "cached_tokens": 1000, "reasoning_tokens": 50,
  "cache_creation_input_tokens": 200, "cache_creation_1h_input_tokens": 100, "audio_input_tokens": 0,
  "audio_output_tokens": 0}`: any subset; omitted totals keep the rule values, omitted parts are 0.
  Semantics are the GenAI conventions': `input_tokens` is the whole prompt INCLUDING cache reads
  (`cached_tokens`) and cache writes (`cache_creation_input_tokens`, of which
  `cache_creation_1h_input_tokens` were written with a 1-hour TTL, the rest with 5 minutes);
  `output_tokens` INCLUDES `reasoning_tokens`. Each provider reports them in its own convention:
  OpenAI chat/completions: `prompt_tokens` = input, `prompt_tokens_details.cached_tokens`,
  `prompt_tokens_details.cache_write_tokens` (only when non-zero), `completion_tokens` = output,
  `completion_tokens_details.reasoning_tokens`, audio tokens in both details.
  OpenAI responses: `input_tokens` = input, `input_tokens_details.{cached_tokens, cache_write_tokens}`,
  `output_tokens` = output, `output_tokens_details.reasoning_tokens` (plus a `reasoning` output item).
  Anthropic: `input_tokens` = input - cached - cache creation, `cache_read_input_tokens` = cached,
  `cache_creation_input_tokens`, `cache_creation.{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}`,
  `output_tokens` = output, `output_tokens_details.thinking_tokens` = reasoning (only when non-zero).
  Streaming: `message_start` carries the input side and `output_tokens: 1` (as the real API does); the
  final `message_delta` carries the cumulative totals.
  Gemini: `promptTokenCount` = input, `cachedContentTokenCount` = cached (when non-zero),
  `candidatesTokenCount` = output - reasoning, `thoughtsTokenCount` = reasoning (when non-zero),
  `totalTokenCount` = input + output; cache writes have no Gemini field. Streaming: every chunk has
  `usageMetadata` with the prompt side; only the last chunk has `finishReason` and the candidate counts.
  A malformed header (bad JSON, unknown field, a part larger than its total) is answered with a 400.
  Sending it: openai/anthropic `extra_headers={"x-fake-usage": json.dumps(...)}`; google-genai
  `config=types.GenerateContentConfig(http_options=types.HttpOptions(headers={...}))` per call, or
  `http_options={**fake.gemini_http_options, "headers": {...}}` per client.
* `x-fake-tool-call: 1|0` forces/forbids a tool call (see above).
* `x-fake-stream-fail-after: N`: a stream sends its first N SSE events, then the connection is dropped
  without finishing the chunked body, so the SDK's stream iterator raises (openai: `APIConnectionError`;
  anthropic and google-genai: the transport's `RemoteProtocolError`).
* `x-fake-latency-ms: N` waits before answering; `x-fake-chunk-delay-ms: N` waits before each SSE event.

Errors from `fail_next(status, count, retry_after)` use each API's error JSON (OpenAI
`{"error": {"message", "type", "code"}}`, Anthropic `{"type": "error", "error": {...}}`, Gemini
`{"error": {"code", "message", "status"}}`) so the SDKs raise their own typed exceptions; openai and
anthropic retry 429/5xx twice by default (fast: `retry-after-ms` is sent), google-genai only when
`http_options.retry_options` asks it to. Every request is recorded, failed ones included.
"""

from __future__ import annotations

from .server import FakeProvider, RecordedRequest
from .usage import Usage

__all__ = ["FakeProvider", "RecordedRequest", "Usage"]
