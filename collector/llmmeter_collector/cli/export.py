"""``llmmeter export``: every matching call as CSV or JSON lines, to a file or stdout, with a progress bar."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import IO, Any

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from llmmeter_collector.cli.common import (
    CollectorError,
    OutputError,
    auth_headers,
    error_message,
    url_option,
    warn_unknown,
)
from llmmeter_collector.cli.filters import call_filters, query_params

_HEADERS: dict[str, str] = {}  # the last export's response headers (the FOCUS export's unpriced count)


def _stream(url: str, params: dict[str, str], out: IO[bytes], progress: Progress | None) -> tuple[int, int]:
    """Copy the export to ``out``; returns (lines, bytes)."""
    lines = size = 0
    path = "/api/v1/export/focus" if params.get("format") == "focus" else "/api/v1/export"
    if path.endswith("focus"):
        params = {k: v for k, v in params.items() if k != "format"}
    try:
        with httpx.stream("GET", url.rstrip("/") + path, params=params, headers=auth_headers(), timeout=60) as response:
            _HEADERS.clear()
            _HEADERS.update(response.headers)
            if response.status_code >= 400:
                response.read()
                raise CollectorError(error_message(url, response))
            task = progress.add_task("exporting", total=None) if progress else None
            for chunk in response.iter_bytes():
                out.write(chunk)
                lines += chunk.count(b"\n")
                size += len(chunk)
                if progress is not None and task is not None:
                    progress.update(task, completed=size, description=f"{lines:,} lines")
    except httpx.HTTPError as exc:
        raise CollectorError(f"cannot reach the collector at {url}: {exc}") from None
    return lines, size


def _run(url: str, params: dict[str, str], out: IO[bytes], bar: Progress | None) -> tuple[int, int]:
    if bar is None:
        return _stream(url, params, out, None)
    with bar:
        return _stream(url, params, out, bar)


def _to_file(path: Path, url: str, params: dict[str, str], bar: Progress | None) -> tuple[int, int]:
    """Write to a temporary file next to ``path`` and rename it on success: a failed export leaves nothing."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the user's umask applies, as for open()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            result = _run(url, params, out, bar)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result


@click.group(invoke_without_command=True)
@url_option
@call_filters
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "focus"]),
    default="csv",
    show_default=True,
    help="focus: a FOCUS 1.2 cost and usage dataset (CSV, or Parquet with an --output ending in .parquet).",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="-", help="File ('-': stdout).")
@click.option("--by", "split", type=click.Choice(["feature", "user"]), multiple=True, help="focus: also split rows by.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [on when stderr is a terminal].")
@click.pass_context
def export(
    ctx: click.Context, url: str, fmt: str, output: str, split: tuple[str, ...], progress: bool | None,
    **filters: Any,
) -> None:  # fmt: skip
    """CSV or JSON lines of every call in a date range and filters, streamed (any size, constant memory);
    or the spend as a FOCUS dataset for FinOps tools (--format focus). `llmmeter export stripe` bills
    your customers through Stripe meters."""
    if ctx.invoked_subcommand is not None:
        return
    params = {**query_params(filters), "format": fmt}
    if split:
        if fmt != "focus":
            raise click.BadParameter("--by splits FOCUS rows: use it with --format focus", param_hint="--by")
        params["by"] = ",".join(split)
    if fmt == "focus" and output.lower().endswith(".parquet"):
        _parquet(url, params, Path(output))
        return
    console = Console(stderr=True)
    show = console.is_terminal if progress is None else progress
    bar = (
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        if show
        else None
    )
    if output == "-":
        try:
            lines, size = _run(url, params, sys.stdout.buffer, bar)
        finally:
            sys.stdout.buffer.flush()
    else:
        lines, size = _to_file(Path(output), url, params, bar)
    rows = max(0, lines - 1) if fmt in ("csv", "focus") else lines
    if rows == 0:
        warn_unknown(url, {k: filters.get(k) for k in ("project", "feature", "model")})
    what = "FOCUS rows" if fmt == "focus" else "calls"
    if output != "-" or show:
        console.print(f"exported {rows:,} {what} ({size:,} bytes) to {'stdout' if output == '-' else output}")
    _warn_unpriced(console)


def _warn_unpriced(console: Console) -> None:
    unpriced = int(_HEADERS.get("x-llmmeter-unpriced-calls", "0") or 0)
    if unpriced:
        console.print(
            f"{unpriced:,} calls without a price are not in the FOCUS rows (FOCUS costs are never null):"
            " llmmeter prices unpriced"
        )


def _parquet(url: str, params: dict[str, str], path: Path) -> None:
    """The FOCUS export as Parquet: fetched as CSV, written with FOCUS types, renamed into place when complete."""
    import io

    from llmmeter_collector.cli.focus import csv_to_parquet

    buffer = io.BytesIO()
    _stream(url, params, buffer, None)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    try:
        rows = csv_to_parquet(buffer.getvalue(), tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    console = Console(stderr=True)
    console.print(f"exported {rows:,} FOCUS rows to {path} (Parquet)")
    _warn_unpriced(console)
