"""``llmmeter export``: every matching call as CSV or JSON lines, to a file or stdout, with a progress bar."""

from __future__ import annotations

import sys
from typing import IO, Any

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from llmmeter_collector.cli.common import CollectorError, auth_headers, url_option
from llmmeter_collector.cli.filters import call_filters, query_params


def _stream(url: str, params: dict[str, str], out: IO[bytes], progress: Progress | None) -> tuple[int, int]:
    """Copy the export to ``out``; returns (lines, bytes)."""
    lines = size = 0
    try:
        with httpx.stream(
            "GET", url.rstrip("/") + "/api/v1/export", params=params, headers=auth_headers(), timeout=60
        ) as response:
            if response.status_code >= 400:
                response.read()
                try:
                    detail = response.json().get("error", response.text)
                except ValueError:
                    detail = response.text
                raise CollectorError(f"collector answered {response.status_code}: {detail}")
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


@click.command()
@url_option
@call_filters
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="-", help="File ('-': stdout).")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [on when stderr is a terminal].")
def export(url: str, fmt: str, output: str, progress: bool | None, **filters: Any) -> None:
    """CSV or JSON lines of every call in a date range and filters, streamed (any size, constant memory)."""
    params = {**query_params(filters), "format": fmt}
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
    target: IO[bytes] = sys.stdout.buffer if output == "-" else open(output, "wb")  # noqa: SIM115 - closed below
    try:
        if bar is not None:
            with bar:
                lines, size = _stream(url, params, target, bar)
        else:
            lines, size = _stream(url, params, target, None)
    finally:
        if output != "-":
            target.close()
        else:
            target.flush()
    rows = max(0, lines - 1) if fmt == "csv" else lines
    if output != "-" or show:
        console.print(f"exported {rows:,} calls ({size:,} bytes) to {'stdout' if output == '-' else output}")
