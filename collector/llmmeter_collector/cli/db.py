"""``llmmeter db``: the ledger's data lifecycle, run against Postgres directly (not over the REST API).

``retention`` drops daily partitions of raw calls older than ``LLMMETER_RETENTION_DAYS`` (rollups stay),
``partitions`` lists them, ``dead-letter`` lists and replays calls Postgres refused for their data,
``backup`` / ``restore`` wrap ``pg_dump -Fc`` / ``pg_restore``. The database is the collector's:
``LLMMETER_DATABASE_URL`` and ``LLMMETER_DATABASE_SCHEMA`` (or the options), or the embedded Postgres under
``LLMMETER_DATA_DIR`` when no URL is set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from llmmeter_collector.cli.common import DatabaseError, require_collector_python

if TYPE_CHECKING:
    from llmmeter_collector.config import Settings
    from llmmeter_collector.ledger.retention import Partition


def _settings(database_url: str | None, schema: str | None, **overrides: Any) -> Settings:
    from llmmeter_collector.config import ConfigError, Settings

    try:
        return Settings.from_env(database_url=database_url, database_schema=schema, **overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@contextmanager
def _database(settings: Settings) -> Iterator[str]:
    """The DSN to work on: the configured one, or the embedded Postgres (started for the command if needed).

    A missing ledger (exit code 1), an unreachable server or a wrong URL (exit code 5) is one line, not a traceback.
    """
    import psycopg

    from llmmeter_collector.cli.serve import database_problem
    from llmmeter_collector.ledger.retention import NoLedger

    embedded = None
    try:
        if settings.database_url:
            yield settings.database_url
        else:
            from llmmeter_collector.ledger.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(settings.data_path)
            yield embedded.start()
    except NoLedger as exc:
        raise click.ClickException(str(exc)) from None
    except psycopg.Error as exc:
        raise DatabaseError(database_problem(exc)) from None
    finally:
        if embedded is not None:
            embedded.stop()


database_url_option = click.option(
    "--database-url", envvar="LLMMETER_DATABASE_URL", default=None, help="Postgres DSN; none: the embedded one."
)
schema_option = click.option(
    "--schema", envvar="LLMMETER_DATABASE_SCHEMA", default=None, help="Schema of llmmeter's tables."
)
pg_bin_option = click.option(
    "--pg-bin-dir", default=None, help="Directory of pg_dump / pg_restore [newest found on the machine]."
)


@click.group()
def db() -> None:
    """Data lifecycle: retention of raw calls, partitions, backup and restore; demo data (seed)."""
    require_collector_python("llmmeter db")


def _partition_row(part: Partition, estimate: bool = False) -> dict[str, Any]:
    return {
        "name": part.name,
        "from": part.start.isoformat(),
        "to": part.end.isoformat(),
        "rows_estimate" if estimate else "rows": part.rows,  # estimate: Postgres' statistics, -1 unknown
        "detached": part.detached,
    }


def _print_partitions(title: str, parts: list[Partition]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("partition", "from (UTC)", "to (UTC)", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for p in parts:
        name = p.name + (" (detached)" if p.detached else "")
        rows = f"{p.rows:,}" if p.rows >= 0 else "?"
        table.add_row(name, f"{p.start:%Y-%m-%d %H:%M}", f"{p.end:%Y-%m-%d %H:%M}", rows)
    Console().print(table)


@db.command()
@database_url_option
@schema_option
@click.option("--days", type=click.IntRange(0), default=None, help="Keep raw calls this many days [90; 0: forever].")
@click.option("--dry-run", is_flag=True, help="List what would be dropped and created; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def retention(database_url: str | None, schema: str | None, days: int | None, dry_run: bool, as_json: bool) -> None:
    """Drop partitions of raw calls older than the retention (archiving them first if configured).

    Rollups are kept forever. The collector runs this on its own every LLMMETER_RETENTION_INTERVAL_SECONDS.
    """
    from llmmeter_collector.config import ConfigError
    from llmmeter_collector.ledger import retention as lifecycle
    from llmmeter_collector.ledger.archive import ArchiveError, ArchiveTarget

    settings = _settings(database_url, schema, retention_days=days)
    try:
        archive = ArchiveTarget.from_settings(settings)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    with _database(settings) as dsn:
        try:
            report = lifecycle.run(
                dsn,
                settings.database_schema or None,
                retention_days=settings.retention_days,
                days_ahead=settings.partition_days_ahead,
                archive=archive,
                dry_run=dry_run,
                audit_retention_days=settings.audit_retention_days,
                actor="llmmeter db retention",
            )
        except ArchiveError as exc:
            raise click.ClickException(f"{exc}; nothing more was dropped") from None
    the_plan = report.plan
    if as_json:
        out = {
            "dry_run": dry_run,
            "retention_days": settings.retention_days,
            "cutoff": the_plan.cutoff.isoformat() if the_plan.cutoff else None,
            "expired": [_partition_row(p) for p in the_plan.expired],
            "kept": [_partition_row(p, estimate=True) for p in the_plan.kept],
            "create": [d.isoformat() for d in the_plan.create],
            "dropped": [p.name for p in report.dropped],
            "archived": [{"location": a.location, "rows": a.rows} for a in report.archived],
            "skipped": report.skipped or None,
        }
        click.echo(json.dumps(out, indent=2))
        return
    if the_plan.cutoff is None:
        click.echo("Retention is off (LLMMETER_RETENTION_DAYS=0): raw calls are kept forever.")
    else:
        click.echo(f"Raw calls before {the_plan.cutoff:%Y-%m-%d %H:%M} UTC ({settings.retention_days} days) expire.")
    if report.skipped:
        click.echo(f"Skipped: {report.skipped}.")
        return
    verb = "Would drop" if dry_run else "Dropped"
    if the_plan.expired:
        _print_partitions(f"{verb} {len(the_plan.expired)} partitions (rollups are kept)", the_plan.expired)
    else:
        click.echo(f"{verb} nothing: no partition is older than the retention.")
    for archived in report.archived:
        click.echo(f"Archived {archived.rows:,} rows to {archived.location}")
    if the_plan.create:
        days_text = ", ".join(f"{d:%Y-%m-%d}" for d in the_plan.create)
        click.echo(f"{'Would create' if dry_run else 'Created'} partitions ahead for {days_text}")


@db.command()
@database_url_option
@schema_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def partitions(database_url: str | None, schema: str | None, as_json: bool) -> None:
    """List the partitions of raw calls (daily; month-wide for a backfill) with their row counts."""
    from llmmeter_collector.ledger import retention as lifecycle
    from llmmeter_collector.ledger import storage

    settings = _settings(database_url, schema)
    with _database(settings) as dsn, storage.connect(dsn, settings.database_schema or None) as conn:
        parts = lifecycle.list_partitions(conn)
    if as_json:
        click.echo(json.dumps([_partition_row(p) for p in parts], indent=2))
    else:
        _print_partitions(f"{len(parts)} partitions of llm_calls", parts)


@db.command()
@database_url_option
@schema_option
@pg_bin_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup(database_url: str | None, schema: str | None, pg_bin_dir: str | None, file: Path) -> None:
    """Write a backup of the ledger to FILE (pg_dump custom format: compressed, restorable anywhere)."""
    from llmmeter_collector.ledger.backup import BackupError
    from llmmeter_collector.ledger.backup import backup as dump

    settings = _settings(database_url, schema)
    with _database(settings) as dsn:
        try:
            tool = dump(dsn, settings.database_schema or None, file, pg_bin_dir)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
    what = f"schema {settings.database_schema}" if settings.database_schema else "the database"
    click.echo(f"Backed up {what} to {file} ({file.stat().st_size:,} bytes, pg_dump {tool.major})")


@db.command()
@database_url_option
@pg_bin_option
@click.option("--clean", is_flag=True, help="Drop llmmeter's existing objects in the target before restoring.")
@click.option("--no-privileges", is_flag=True, help="Skip GRANTs (roles missing on the target server).")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def restore(database_url: str | None, pg_bin_dir: str | None, clean: bool, no_privileges: bool, file: Path) -> None:
    """Restore a backup made by `llmmeter db backup` into the database (all or nothing)."""
    from llmmeter_collector.ledger.backup import BackupError
    from llmmeter_collector.ledger.backup import restore as load

    settings = _settings(database_url, None)
    with _database(settings) as dsn:
        try:
            tool = load(dsn, file, clean=clean, no_privileges=no_privileges, bin_dir=pg_bin_dir)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"Restored {file} (pg_restore {tool.major})")


@db.command()
@database_url_option
@schema_option
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="An embedded Postgres of its own in this directory (instead of --database-url).",
)
@click.option("--calls", "count", type=click.IntRange(1, 10_000_000), default=20_000, show_default=True)
@click.option("--days", type=click.IntRange(1, 400), default=30, show_default=True, help="Spread over this many days.")
@click.option("--seed", "seed", type=int, default=7, show_default=True, help="Random seed (same seed, same data).")
def seed(database_url: str | None, schema: str | None, data_dir: Path | None, count: int, days: int, seed: int) -> None:
    """Write a realistic month of demo calls (3 providers, 3 projects, errors, an unpriced model) into a database.

    Priced with the collector's catalog and written through its ledger, so rollups and totals are what ingesting
    the same spans would give. The target must be named (--database-url, or --data-dir for an embedded Postgres
    of its own): seeded calls are not marked as demo data, so they never land in `llmmeter serve`'s default one.
    """
    from llmmeter_collector.devtools import datagen
    from llmmeter_collector.ledger import storage
    from llmmeter_collector.pricing import PriceCatalog

    if bool(database_url) == bool(data_dir):
        raise click.UsageError(
            "name where the demo data goes: --database-url (a throwaway database or --schema) or --data-dir DIR"
            " (a new embedded Postgres); never the default data directory of `llmmeter serve`"
        )
    settings = _settings(database_url, schema, **({"data_dir": str(data_dir)} if data_dir else {}))
    with _database(settings) as dsn:
        storage.migrate(dsn, settings.database_schema or None)
        ledger = storage.Ledger(dsn, settings.database_schema or None)
        try:
            written = datagen.generate(ledger, PriceCatalog(settings.prices_file or None), count, days=days, seed=seed)
        finally:
            ledger.close()
    if data_dir:
        where, serve = f"the embedded Postgres in {data_dir}", f"LLMMETER_DATA_DIR={data_dir} llmmeter serve"
    else:
        where, serve = "the database", "LLMMETER_DATABASE_URL=... llmmeter serve"
    click.echo(f"Seeded {written:,} calls over the last {days} days into {where}.")
    click.echo(f"Start a collector on it ({serve}) and try `llmmeter status`, `llmmeter calls --since 7d`.")


@db.group("dead-letter")
def dead_letter() -> None:
    """Calls Postgres refused for their data (kept in llm_calls_dead_letter): list them, replay them after a fix."""


@dead_letter.command("list")
@database_url_option
@schema_option
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def dead_letter_list(database_url: str | None, schema: str | None, limit: int, as_json: bool) -> None:
    """List refused calls, most recent first, with Postgres' error."""
    from llmmeter_collector.ledger import storage
    from llmmeter_collector.ledger.deadletter import list_dead_letters

    settings = _settings(database_url, schema)
    with _database(settings) as dsn, storage.connect(dsn, settings.database_schema or None) as conn:
        rows = [d.summary() for d in list_dead_letters(conn, limit)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} refused calls (llm_calls_dead_letter)")
    for column in ("id", "start (UTC)", "project", "span", "error", "attempts"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r["id"]), r["ts"][:19], r["project"][:30], r["span_id"], r["error"], str(r["attempts"]))
    Console().print(table)


@dead_letter.command("replay")
@database_url_option
@schema_option
def dead_letter_replay(database_url: str | None, schema: str | None) -> None:
    """Write every refused call again; the ones Postgres now takes leave the table (exit 1 if any is refused)."""
    from llmmeter_collector.ledger.deadletter import replay

    settings = _settings(database_url, schema)
    with _database(settings) as dsn:
        report = replay(dsn, settings.database_schema or None)
    click.echo(
        f"{report.replayed} replayed, {report.still_refused} still refused"
        + (f", {report.unreadable} not readable as calls" if report.unreadable else "")
    )
    if report.still_refused or report.unreadable:
        raise SystemExit(1)
