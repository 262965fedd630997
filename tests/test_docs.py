"""The documentation site: it builds strictly, every alert's runbook URL lands on a heading of the built site,
the generated reference pages match their sources (the OpenAPI document a real collector serves, the
dashboards), every CLI command and exit code is documented, and the README stays a short front door."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from llmmeter_collector.cli import cli, common
from llmmeter_collector.service import BackgroundCollector

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = str(Path(sys.executable).parent / "mkdocs")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [MKDOCS, "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    return out


def test_every_runbook_url_lands_on_a_heading_of_the_site(site: Path) -> None:
    base = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["site_url"]
    urls = []
    for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            urls += [r["annotations"]["runbook_url"] for r in group["rules"] if "alert" in r]
    assert len(urls) >= 10
    for url in urls:
        assert url.startswith(base), url
        page, _, anchor = url.removeprefix(base).partition("#")
        html = (site / page / "index.html").read_text()
        assert f'id="{anchor}"' in html, f"{url}: no heading #{anchor} on {page}"


def test_the_api_reference_page_matches_the_openapi_document_the_collector_serves(
    collector: BackgroundCollector, tmp_path: Path
) -> None:
    document = httpx.get(collector.url + "/api/v1/openapi.json").json()
    saved = tmp_path / "openapi.json"
    saved.write_text(json.dumps(document))
    check = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_reference.py"), "--openapi", str(saved), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr  # stale: python docs/gen_reference.py --openapi URL
    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    for path in document["paths"]:
        assert f"`{path}`" in page


def test_every_cli_command_and_exit_code_is_documented() -> None:
    page = (ROOT / "docs" / "cli.md").read_text()
    for name in cli.commands:
        assert f"## llmmeter {name}" in page, f"docs/cli.md has no section for `llmmeter {name}`"
    table = page.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = {v for k, v in vars(common).items() if k.startswith("EXIT_")}
    assert codes == {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)}


def test_the_readme_is_a_short_front_door_whose_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "make demo" in readme and "make test" in readme and "llmmeter.instrument()" in readme
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), link
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in sorted((ROOT / "docs").rglob("*.md")):
        assert str(page.relative_to(ROOT / "docs")) in nav, f"{page.name} is not in mkdocs.yml's nav"
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License\n                           Version 2.0")
