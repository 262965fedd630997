"""Archive to S3-compatible storage before retention drops a partition. The storage is a real S3-compatible
HTTP server (moto's server mode, from PyPI) running as a separate process on loopback; llmmeter talks to it
through boto3 exactly as it would to AWS S3, MinIO or R2."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import boto3
import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from llmmeter_collector.config import Settings
from llmmeter_collector.ledger import retention
from llmmeter_collector.ledger.archive import ArchiveError, ArchiveTarget
from llmmeter_collector.service import BackgroundCollector

from .lifecycle import Call, export, make_spans


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to 30 s for the server to import and listen
            try:
                httpx.get(url + "/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, "moto server exited"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "llmmeter-test",
        "AWS_SECRET_ACCESS_KEY": "llmmeter-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _rows(dsn: str, schema: str, table: str) -> list[dict]:  # type: ignore[type-arg]
    with psycopg.connect(dsn, options=f"-c search_path={schema} -c timezone=UTC", row_factory=dict_row) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY ts, trace_id, span_id").fetchall()


def _jsonl(body: bytes) -> list[dict]:  # type: ignore[type-arg]
    with gzip.open(io.BytesIO(body), "rt", encoding="utf-8") as fh:
        return [json.loads(line, parse_float=Decimal) for line in fh]


def _same(db_row: dict, archived: dict) -> None:  # type: ignore[type-arg]
    for column, value in db_row.items():
        got = archived[column]
        if isinstance(value, datetime):
            got = datetime.fromisoformat(got)
        elif isinstance(value, Decimal):
            got = Decimal(str(got))
        assert got == value, column


def test_partitions_are_archived_to_s3_before_they_are_dropped(
    settings: Settings, database_url: str, pg_schema: str, s3_endpoint: str, aws_env: None
) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = f"llmmeter-{pg_schema.replace('_', '-')}"
    s3.create_bucket(Bucket=bucket)
    old = datetime.now(timezone.utc).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(days=120)
    day = f"llm_calls_p{old:%Y%m%d}"
    settings = dataclasses.replace(settings, retention_days=0, retention_interval_seconds=0)
    with BackgroundCollector(settings) as running:
        export(running.url, make_spans([Call(old + timedelta(minutes=m), 1000 + m, 300 + m) for m in range(25)]))
        rows = _rows(database_url, pg_schema, day)

        target = ArchiveTarget.from_settings(
            dataclasses.replace(settings, archive_url=f"s3://{bucket}/prod/ledger", archive_s3_endpoint=s3_endpoint)
        )
        assert target is not None
        report = retention.run(database_url, pg_schema, retention_days=90, days_ahead=0, archive=target)
        assert [a.location for a in report.archived] == [f"s3://{bucket}/prod/ledger/{day}.jsonl.gz"]
        assert report.archived[0].rows == 25
        archived = _jsonl(s3.get_object(Bucket=bucket, Key=f"prod/ledger/{day}.jsonl.gz")["Body"].read())
        assert len(archived) == len(rows) == 25
        for db_row, arch_row in zip(rows, archived, strict=True):
            _same(db_row, arch_row)

        # late data for the same day is archived next to the first file, never over it
        export(running.url, make_spans([Call(old + timedelta(hours=1), 5, 5)]))
        again = retention.run(database_url, pg_schema, retention_days=90, days_ahead=0, archive=target)
        assert [a.location for a in again.archived] == [f"s3://{bucket}/prod/ledger/{day}.1.jsonl.gz"]
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
        assert keys == [f"prod/ledger/{day}.1.jsonl.gz", f"prod/ledger/{day}.jsonl.gz"]
        assert len(_jsonl(s3.get_object(Bucket=bucket, Key=keys[1])["Body"].read())) == 25

        # an unreachable bucket fails the archive: the rows are not dropped
        export(running.url, make_spans([Call(old + timedelta(hours=2), 6, 6)]))
        missing = dataclasses.replace(target, url="s3://no-such-bucket/x")
        with pytest.raises(ArchiveError, match="cannot upload the archive of " + day):
            retention.run(database_url, pg_schema, retention_days=90, days_ahead=0, archive=missing)
        assert len(_rows(database_url, pg_schema, day)) == 1
