"""`python -m llmmeter_collector.devtools.fakeprovider --port 8765`: run the fake provider in the foreground."""

from __future__ import annotations

import argparse

from . import FakeProvider


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic/Gemini API server for tests and demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    fake = FakeProvider(host=args.host, port=args.port)
    fake.start()
    print(f"fake provider listening on {fake.url}", flush=True)
    print(f"  OpenAI:    base_url={fake.openai_base_url}", flush=True)
    print(f"  Anthropic: base_url={fake.anthropic_base_url}", flush=True)
    print(f"  Gemini:    http_options={fake.gemini_http_options}", flush=True)
    fake.serve_forever()


if __name__ == "__main__":
    main()
