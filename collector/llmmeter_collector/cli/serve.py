"""``llmmeter serve``: run the collector in the foreground."""

from __future__ import annotations

import logging

import click


@click.command()
@click.option("--host", envvar="LLMMETER_HOST", default=None, help="Address to listen on [127.0.0.1].")
@click.option("--port", "http_port", type=click.IntRange(0, 65535), default=None, help="OTLP/HTTP + API port [4318].")
@click.option("--database-url", envvar="LLMMETER_DATABASE_URL", default=None, help="Postgres DSN; none: embedded.")
def serve(host: str | None, http_port: int | None, database_url: str | None) -> None:
    """Run the collector: OTLP in, prices on, ledger in Postgres, /metrics and the REST API out."""
    from llmmeter_collector.config import ConfigError, Settings
    from llmmeter_collector.service import serve as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(host=host, http_port=http_port, database_url=database_url)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    run(settings)
