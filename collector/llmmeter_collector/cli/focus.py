"""FOCUS files on the CLI side: the export written as Parquet, and a cloud's FOCUS export read for
``llmmeter import focus`` (its AI-service rows are sent to ``POST /api/v1/focus/import``; ``exporters/focus.py``).

Parquet needs pyarrow (``pip install 'llmmeter[archive]'``); CSV needs nothing more.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import CollectorError, count, get, json_option, request, url_option, usd
from llmmeter_collector.exporters import focus


class MissingExtra(click.ClickException):
    exit_code = 3


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError:
        raise MissingExtra("Parquet needs pyarrow: pip install 'llmmeter[archive]'") from None
    return pyarrow


def csv_to_parquet(data: bytes, path: Path) -> int:
    """Write the export's CSV as Parquet with FOCUS types (decimals exact, date/times UTC); the row count."""
    pa = _pyarrow()
    types = {c: pa.string() for c in focus.COLUMNS}  # a column of nulls stays a string column
    types |= {c: pa.decimal128(38, 18) for c in focus.DECIMAL_COLUMNS}
    types |= {c: pa.timestamp("s", tz="UTC") for c in focus.DATETIME_COLUMNS}
    types |= {c: pa.int64() for c in ("x_Calls",)}
    options = pa.csv.ConvertOptions(column_types=types, strings_can_be_null=True, null_values=[""])
    table = pa.csv.read_csv(io.BytesIO(data), convert_options=options)
    pa.parquet.write_table(table, path)
    return int(table.num_rows)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def read_file(path: Path) -> tuple[list[str], list[dict[str, Any]], int]:
    """(columns, AI-service rows with their _row number, rows read) of a FOCUS CSV or Parquet file."""
    if path.suffix.lower() == ".parquet":
        pa = _pyarrow()
        try:
            table = pa.parquet.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise click.BadParameter(f"{path}: not a readable Parquet file: {exc}", param_hint="FILE") from None
        columns = list(table.column_names)
        records: Iterator[dict[str, Any]] = ({k: _plain(v) for k, v in row.items()} for row in table.to_pylist())
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"{path}: cannot read it as UTF-8 CSV: {exc}", param_hint="FILE") from None
        reader = csv.DictReader(io.StringIO(text))
        columns = list(reader.fieldnames or [])
        records = iter(reader)
    kept, total = [], 0
    for number, row in enumerate(records, start=1):
        total = number
        if focus.is_ai(row):
            kept.append({**row, "_row": number})
    return columns, kept, total


@click.group("import")
def import_group() -> None:
    """Bring outside cost data beside the ledger: a cloud's FOCUS export."""


@import_group.command("focus")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@url_option
@json_option
def import_focus(file: Path, url: str, as_json: bool) -> None:
    """Keep the AI-service rows (Bedrock, Azure OpenAI, Vertex AI, ...) of a cloud's FOCUS FILE (CSV or Parquet).

    Importing the same file again adds nothing. A file with a bad row is refused whole, naming the row and column.
    """
    if not file.is_file():
        raise click.BadParameter(f"no such file {str(file)!r}", param_hint="FILE")
    columns, rows, total = read_file(file)
    try:
        focus.parse_rows(rows, columns)
    except focus.FocusError as exc:
        raise CollectorError(f"{file}: {exc}; nothing imported") from None
    body = {
        "file_name": file.name,
        "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
        "rows_read": total,
        "columns": columns,
        "rows": rows,
    }
    answer = request(url, "POST", "/api/v1/focus/import", json=body)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    elif answer["already_imported"]:
        click.echo(f"{file}: already imported (import {answer['import_id']}); nothing added")
    else:
        click.echo(
            f"{file}: kept {count(answer['rows_kept'])} AI-service rows of {count(total)}"
            f" ({usd(answer['billed_usd'])} billed; import {answer['import_id']})."
            " Compare: llmmeter reconcile --provider focus"
        )


@import_group.command("list")
@url_option
@json_option
def import_list(url: str, as_json: bool) -> None:
    """The FOCUS imports and the cloud AI spend they hold, per UTC day and service."""
    data = get(url, "/api/v1/focus/costs")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data["imports"]:
        click.echo("no FOCUS file imported yet: llmmeter import focus FILE")
        return
    table = Table(title="cloud AI spend from FOCUS imports")
    for column in ("day", "provider", "service", "ledger provider", "billed"):
        table.add_column(column)
    for c in data["costs"]:
        table.add_row(c["day"], c["provider"], c["service"], c["ledger_provider"] or "-", usd(c["billed_usd"]))
    Console().print(table)
    for i in data["imports"]:
        click.echo(f"import {i['id']}: {i['file_name']} ({count(i['rows_kept'])} of {count(i['rows_read'])} rows)")
