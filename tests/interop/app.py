"""The small app each peer traces: one provider call, run INSIDE the peer's own virtualenv by capture.py.

``python app.py PEER PROVIDER MODE`` with the environment set by capture.py (FAKE_URL: the fake provider,
OTLP_URL: the capture server, FAKE_USAGE: the x-fake-usage header, MODEL). It imports only what the peer's
virtualenv has (the peer's library, the provider SDK, OpenTelemetry), sets the peer up the way its docs say,
makes one call (``MODE`` "plain" or "stream") and flushes the peer's exporter before it exits.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

FAKE_URL = os.environ["FAKE_URL"]
OTLP_URL = os.environ["OTLP_URL"]  # http://127.0.0.1:PORT (the capture server)
HEADERS = {"x-fake-usage": os.environ["FAKE_USAGE"]}
MODEL = os.environ["MODEL"]
PROMPT = "Say something short about the sea."


def _otel_provider(service: str) -> Any:
    """A global TracerProvider exporting OTLP/HTTP protobuf to the capture server (the usual app setup)."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=OTLP_URL + "/v1/traces")))
    trace.set_tracer_provider(provider)
    return provider


def _flush_otel() -> None:
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    provider.force_flush()  # type: ignore[attr-defined]
    provider.shutdown()  # type: ignore[attr-defined]


# --- the calls ------------------------------------------------------------------------------------------
def call_openai(stream: bool, client: Any = None) -> None:
    if client is None:
        import openai

        client = openai.OpenAI(base_url=FAKE_URL + "/v1", api_key="x")
    messages = [{"role": "user", "content": PROMPT}]
    if stream:
        chunks = client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}, extra_headers=HEADERS
        )
        for _ in chunks:
            pass
    else:
        client.chat.completions.create(model=MODEL, messages=messages, extra_headers=HEADERS)


def call_anthropic(stream: bool) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=FAKE_URL, api_key="x")
    messages = [{"role": "user", "content": PROMPT}]
    if stream:
        events = client.messages.create(
            model=MODEL, max_tokens=1024, messages=messages, stream=True, extra_headers=HEADERS
        )
        for _ in events:
            pass
    else:
        client.messages.create(model=MODEL, max_tokens=1024, messages=messages, extra_headers=HEADERS)


def call_gemini(stream: bool) -> None:
    from google import genai

    client = genai.Client(api_key="x", http_options={"base_url": FAKE_URL, "headers": HEADERS})
    if stream:
        for _ in client.models.generate_content_stream(model=MODEL, contents=PROMPT):
            pass
    else:
        client.models.generate_content(model=MODEL, contents=PROMPT)


CALLS: dict[str, Callable[[bool], None]] = {"openai": call_openai, "anthropic": call_anthropic, "gemini": call_gemini}


# --- the peers' setups: each returns the function that flushes its export ------------------------------
def setup_otel_openai_v2(provider: str) -> Callable[[], None]:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    _otel_provider("interop-otel-openai-v2")
    OpenAIInstrumentor().instrument()
    return _flush_otel


def setup_otel_google_genai(provider: str) -> Callable[[], None]:
    from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor

    _otel_provider("interop-otel-google-genai")
    GoogleGenAiSdkInstrumentor().instrument()
    return _flush_otel


def setup_anthropic_sdk(provider: str) -> Callable[[], None]:
    """anthropic's own tracing: the SDK emits spans through the global TracerProvider when there is one."""
    _otel_provider("interop-anthropic-sdk")
    return _flush_otel


def setup_openllmetry(provider: str) -> Callable[[], None]:
    _otel_provider("interop-openllmetry")
    if provider == "openai":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
    elif provider == "anthropic":
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

        AnthropicInstrumentor().instrument()
    else:
        from opentelemetry.instrumentation.google_generativeai import GoogleGenerativeAiInstrumentor

        GoogleGenerativeAiInstrumentor().instrument()
    return _flush_otel


def setup_openlit(provider: str) -> Callable[[], None]:
    import openlit

    openlit.init(otlp_endpoint=OTLP_URL, application_name="interop-openlit", disable_metrics=True)
    return _flush_otel


def setup_openinference(provider: str) -> Callable[[], None]:
    _otel_provider("interop-openinference")
    if provider == "openai":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
    elif provider == "anthropic":
        from openinference.instrumentation.anthropic import AnthropicInstrumentor

        AnthropicInstrumentor().instrument()
    else:
        from openinference.instrumentation.google_genai import GoogleGenAIInstrumentor

        GoogleGenAIInstrumentor().instrument()
    return _flush_otel


def setup_langfuse(provider: str) -> Callable[[], None]:
    """Langfuse's OpenAI drop-in; its OTel exporter posts to {host}/api/public/otel/v1/traces."""
    os.environ.update(LANGFUSE_PUBLIC_KEY="pk-lf-interop", LANGFUSE_SECRET_KEY="sk-lf-interop", LANGFUSE_HOST=OTLP_URL)
    os.environ["LANGFUSE_BASE_URL"] = OTLP_URL
    from langfuse import get_client
    from langfuse.openai import openai

    global call_openai_client
    call_openai_client = openai.OpenAI(base_url=FAKE_URL + "/v1", api_key="x")

    def flush() -> None:
        get_client().flush()
        get_client().shutdown()

    return flush


def setup_logfire(provider: str) -> Callable[[], None]:
    import logfire
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    logfire.configure(
        send_to_logfire=False,
        service_name="interop-logfire",
        console=False,
        additional_span_processors=[BatchSpanProcessor(OTLPSpanExporter(endpoint=OTLP_URL + "/v1/traces"))],
    )
    if provider == "openai":
        logfire.instrument_openai()
    elif provider == "anthropic":
        logfire.instrument_anthropic()
    else:
        logfire.instrument_google_genai()

    def flush() -> None:
        logfire.force_flush()
        logfire.shutdown()

    return flush


def setup_llmmeter_with_openai_v2(provider: str) -> Callable[[], None]:
    """The duplicate the issue names: llmmeter.instrument() and the official openai-v2 in one app."""
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    import llmmeter

    _otel_provider("interop-llmmeter-openai-v2")
    OpenAIInstrumentor().instrument()
    llmmeter.instrument(configure_export=False)
    return _flush_otel


def setup_openllmetry_with_anthropic_sdk(provider: str) -> Callable[[], None]:
    """The other duplicate: OpenLLMetry's Anthropic instrumentation on top of anthropic's own tracing."""
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

    _otel_provider("interop-openllmetry-anthropic-sdk")
    AnthropicInstrumentor().instrument()
    return _flush_otel


def setup_openinference_with_anthropic_sdk(provider: str) -> Callable[[], None]:
    """OpenInference's Anthropic instrumentation on top of anthropic's own tracing (on by default)."""
    from openinference.instrumentation.anthropic import AnthropicInstrumentor

    _otel_provider("interop-openinference-anthropic-sdk")
    AnthropicInstrumentor().instrument()
    return _flush_otel


call_openai_client: Any = None


def main(peer: str, provider: str, mode: str) -> None:
    setup = globals()["setup_" + peer.replace("-", "_")]
    flush = setup(provider)
    stream = mode == "stream"
    if provider == "openai" and call_openai_client is not None:
        call_openai(stream, call_openai_client)
    else:
        CALLS[provider](stream)
    flush()
    print(json.dumps({"peer": peer, "provider": provider, "mode": mode, "ok": True}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
