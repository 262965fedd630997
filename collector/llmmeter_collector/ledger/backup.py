"""Backups of the ledger with Postgres's own tools: ``pg_dump -Fc`` to one file, ``pg_restore`` from it.

A custom-format dump is compressed, restores table by table and can be restored into another database or
server. The client tools must be at least as new as the server (``pg_dump`` refuses an older client); this
module picks the newest ``pg_dump`` / ``pg_restore`` it can find (``PATH``, Debian's
``/usr/lib/postgresql/*/bin``, the binaries bundled with the embedded Postgres) and says which version to
install when none is new enough.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from llmmeter_collector.ledger import storage


class BackupError(RuntimeError):
    """A backup or restore failed; the message says why (and the tool's own error text)."""


@dataclass(frozen=True)
class PgTool:
    path: str
    major: int


def _version(path: str) -> int | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def _candidates(name: str, bin_dir: str | None) -> list[str]:
    if bin_dir:
        return [str(Path(bin_dir) / name)]
    found = [shutil.which(name) or "", *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))]
    try:
        import pgserver  # the embedded Postgres ships its own client tools

        found.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name))
    except ImportError:
        pass
    return [path for path in dict.fromkeys(found) if path and Path(path).is_file()]


def find_tool(name: str, server_major: int, bin_dir: str | None = None) -> PgTool:
    """The newest ``name`` (pg_dump / pg_restore) available; BackupError if it is older than the server."""
    tools = [PgTool(path, major) for path in _candidates(name, bin_dir) if (major := _version(path)) is not None]
    if not tools:
        where = bin_dir or "PATH, /usr/lib/postgresql/*/bin"
        raise BackupError(f"{name} not found in {where}: install the PostgreSQL client (postgresql-client)")
    best = max(tools, key=lambda t: t.major)
    if best.major < server_major:
        raise BackupError(
            f"{name} {best.major} ({best.path}) is older than the PostgreSQL {server_major} server: "
            f"install postgresql-client-{server_major} or pass --pg-bin-dir"
        )
    return best


def server_major(dsn: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            return conn.info.server_version // 10000
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to Postgres: {exc}") from exc


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        tool = Path(argv[0]).name
        raise BackupError(f"{tool} failed (exit {result.returncode}): {result.stderr.strip()}")


def backup(dsn: str, schema: str | None, file: Path, bin_dir: str | None = None) -> PgTool:
    """Dump llmmeter's schema (or the whole database when no schema is set) into ``file`` (custom format)."""
    tool = find_tool("pg_dump", server_major(dsn), bin_dir)
    if schema:
        storage.connect_kwargs(schema)  # validates the name
    partial = file.with_name(file.name + ".partial")
    argv = [tool.path, "--format=custom", f"--file={partial}", f"--dbname={dsn}"]
    if schema:
        argv.append(f"--schema={schema}")
    try:
        _run(argv)
        partial.replace(file)  # the file is complete or absent
    finally:
        partial.unlink(missing_ok=True)
    return tool


def _output(argv: list[str], stdin: bytes | None = None) -> bytes:
    result = subprocess.run(argv, capture_output=True, input=stdin)
    if result.returncode != 0:
        tool = Path(argv[0]).name
        raise BackupError(f"{tool} failed (exit {result.returncode}): {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


_ENTRY_RE = re.compile(r"^\d+; \d+ \d+ (SCHEMA|TABLE|VIEW|SEQUENCE) (\S+) (\S+) \S+$", re.MULTILINE)


def _drops(listing: str) -> str:
    """SQL dropping what a backup holds: its schemas (CASCADE), or its tables where it has no schema entry."""
    entries = _ENTRY_RE.findall(listing)
    schemas = {name for kind, _, name in entries if kind == "SCHEMA"}
    statements = [f'DROP SCHEMA IF EXISTS "{name}" CASCADE;' for name in sorted(schemas)]
    for kind, schema, name in entries:
        if kind != "SCHEMA" and schema not in schemas:
            statements.append(f'DROP {kind} IF EXISTS "{schema}"."{name}" CASCADE;')
    return "\n".join(statements) + "\n"


def restore(
    dsn: str, file: Path, *, clean: bool = False, no_privileges: bool = False, bin_dir: str | None = None
) -> PgTool:
    """Restore a dump made by :func:`backup` into the database ``dsn``, in one transaction (all or nothing).

    ``clean`` first drops what the backup holds (its schema, CASCADE), in the same transaction. (pg_restore's
    own ``--clean`` cannot drop the indexes of a partitioned table in a working order.)
    """
    if not file.is_file():
        raise BackupError(f"no such backup file: {file}")
    tool = find_tool("pg_restore", server_major(dsn), bin_dir)
    options = ["--no-owner", *(["--no-privileges"] if no_privileges else [])]
    if not clean:
        _run([tool.path, "--exit-on-error", "--single-transaction", *options, f"--dbname={dsn}", str(file)])
        return tool
    psql = find_tool("psql", 0, bin_dir)
    listing = _output([tool.path, "--list", str(file)]).decode()
    script = _drops(listing).encode() + _output([tool.path, "--file=-", *options, str(file)])
    _output(
        [psql.path, "--no-psqlrc", "--quiet", "--single-transaction", "--set=ON_ERROR_STOP=1", f"--dbname={dsn}"],
        stdin=script,
    )
    return tool
