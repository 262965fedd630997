"""The collector's layout (docs/development.md): stages as subpackages, every one of them under the import contracts."""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR = ROOT / "collector" / "llmmeter_collector"
SDK = ROOT / "instrumentation" / "llmmeter"


def _contract(kind: str) -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["type"] == kind)


def test_every_module_at_the_top_of_the_collector_and_every_stage_is_a_layer_of_the_contract():
    layers = {name.strip() for layer in _contract("layers")["layers"] for name in layer.split("|")}
    top = {p.stem for p in COLLECTOR.glob("*.py") if p.stem != "__init__"}
    stages = {p.name for p in COLLECTOR.iterdir() if (p / "__init__.py").is_file()}
    assert len(top) + 1 <= 8, f"at most 8 modules at the top of the collector, found {sorted(top)}"
    assert not (top | stages) - layers, f"not placed in [tool.importlinter] layers: {sorted((top | stages) - layers)}"
    assert not layers - (top | stages), f"layers that no longer exist: {sorted(layers - (top | stages))}"


def test_both_packages_are_under_the_no_cycle_contract():
    assert set(_contract("acyclic_siblings")["ancestors"]) == {"llmmeter", "llmmeter_collector"}


def test_every_module_opens_with_a_line_saying_what_it_is_for():
    missing = []
    for path in [*COLLECTOR.rglob("*.py"), *SDK.rglob("*.py")]:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not doc or len(doc.splitlines()[0].split()) < 3:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"modules without a one-line docstring saying what they are for: {missing}"
