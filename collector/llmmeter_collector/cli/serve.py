"""``llmmeter serve``: run the collector in the foreground.

A busy port (exit code 4), an unreachable database or a wrong database URL (exit code 5) and a Python older than
3.11 (exit code 7) each end with one line saying what to change, not a traceback.
"""

from __future__ import annotations

import logging
import socket

import click

from llmmeter_collector.cli.common import EXIT_PORT_BUSY, DatabaseError, require_collector_python


class PortBusy(click.ClickException):
    """The HTTP or gRPC port is already taken (exit code 4)."""

    exit_code = EXIT_PORT_BUSY


def check_port(host: str, port: int, what: str, option: str) -> None:
    """Raise PortBusy when ``host:port`` cannot be bound (another process listens there)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortBusy(
                f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc} (another collector running?"
                f" choose another port with {option})"
            ) from None


@click.command()
@click.option("--host", envvar="LLMMETER_HOST", default=None, help="Address to listen on [127.0.0.1].")
@click.option("--port", "http_port", type=click.IntRange(0, 65535), default=None, help="OTLP/HTTP + API port [4318].")
@click.option("--database-url", envvar="LLMMETER_DATABASE_URL", default=None, help="Postgres DSN; none: embedded.")
def serve(host: str | None, http_port: int | None, database_url: str | None) -> None:
    """Run the collector: OTLP in, prices on, ledger in Postgres, /metrics and the REST API out."""
    require_collector_python("llmmeter serve (the collector)")
    import psycopg

    from llmmeter_collector.access.bootstrap import check_token
    from llmmeter_collector.config import ConfigError, Settings
    from llmmeter_collector.service import serve as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(host=host, http_port=http_port, database_url=database_url)
        check_token(settings.bootstrap_admin_key)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if not settings.reuse_port:  # with SO_REUSEPORT several collectors share the port on purpose
        check_port(settings.host, settings.http_port, "OTLP/HTTP and the API", "--port or LLMMETER_HTTP_PORT")
    check_port(settings.host, settings.grpc_port, "OTLP/gRPC", "LLMMETER_GRPC_PORT (0: no gRPC)")
    try:
        run(settings)
    except psycopg.Error as exc:
        raise DatabaseError(database_problem(exc)) from None


def database_problem(exc: Exception) -> str:
    """One line for a psycopg error at start-up: what failed and what to check."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"cannot use the database: {first} (check --database-url / LLMMETER_DATABASE_URL and that Postgres runs)"
