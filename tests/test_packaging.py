"""One distribution: a light SDK for apps, the collector and CLI behind extras, a clear message when missing."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# click and rich are not listed: httpx, which the provider SDKs use, imports them when they are installed.
HEAVY = ("psycopg", "grpc", "starlette", "uvicorn", "genai_prices", "pgserver", "prometheus_client")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_and_instrumenting_the_sdk_loads_no_collector_dependency() -> None:
    result = _python(
        "import sys, llmmeter\n"
        "llmmeter.instrument(configure_export=False)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_importing_the_sdk_loads_no_cli_dependency() -> None:
    result = _python("import sys, llmmeter\nprint(sorted(m for m in ('click', 'rich', 'httpx') if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_command_says_which_extra_to_install_when_the_cli_packages_are_missing() -> None:
    result = _python("import sys; sys.modules['click'] = None\nfrom llmmeter._cli import main\nmain()")
    assert result.returncode == 3
    assert "click is missing" in result.stderr
    assert "pip install 'llmmeter[cli]'" in result.stderr


def test_the_wheel_ships_both_packages_and_keeps_collector_dependencies_in_extras(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("llmmeter-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "llmmeter/__init__.py" in names
    assert "llmmeter_collector/service.py" in names
    assert any(n.startswith("llmmeter_collector/ingest/_otlp_fields.") and n.endswith(".so") for n in names)  # C reader
    assert not any(n.endswith(".c") for n in names)
    assert "llmmeter_collector/ledger/migrations/0001_ledger.sql" in names
    assert "llmmeter = llmmeter._cli:main" in entry_points
    requires = metadata.get_all("Requires-Dist") or []
    unconditional = [r.split(";")[0].strip() for r in requires if "extra ==" not in r]
    assert any(r.startswith("opentelemetry-sdk") for r in unconditional)
    for heavy in ("psycopg", "grpcio", "starlette", "genai-prices", "pgserver", "click"):
        assert not any(r.startswith(heavy) for r in unconditional), f"{heavy} must be behind an extra"
    assert any(r.startswith("psycopg") and "collector" in r.split(";")[1] for r in requires if ";" in r)
    assert metadata["Requires-Python"] == ">=3.10"


def test_without_a_compiler_the_wheel_still_builds_as_pure_python(tmp_path: Path) -> None:
    env = {**os.environ, "CC": "false"}  # a compiler that always fails
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
        env=env,
    )
    (wheel,) = tmp_path.glob("llmmeter-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert not any(n.endswith(".so") for n in archive.namelist())
