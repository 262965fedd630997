"""The overrides file's JSON Schema (for editors) is current and agrees with the collector's validator."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from llmmeter_collector.cli import cli
from llmmeter_collector.pricing import check_price_file
from llmmeter_collector.pricing.overrides import SCHEMA_FILE, json_schema, schema_text

from .test_pricing import EXAMPLE_FILE, write


class _EditorLoader(yaml.SafeLoader):
    """YAML as an editor's language server sees it: an unquoted date stays the text it is."""


_EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _schema_problems(path: Path) -> list[str]:
    document = yaml.load(path.read_text(), Loader=_EditorLoader)
    validator = jsonschema.Draft202012Validator(json_schema())
    return [error.message for error in validator.iter_errors(document)]


def test_the_committed_schema_is_what_the_validator_s_key_sets_generate():
    assert SCHEMA_FILE.read_text() == schema_text(), "stale: regenerate with `llmmeter prices schema`"
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_llmmeter_prices_schema_prints_it_without_a_collector():
    result = CliRunner().invoke(cli, ["prices", "schema"])
    assert result.exit_code == 0 and json.loads(result.output) == json_schema()


def test_the_example_file_is_valid_for_both():
    assert check_price_file(EXAMPLE_FILE) == [] and _schema_problems(EXAMPLE_FILE) == []


VALID = """\
version: 1
models:
  - model: acme-ft-*
    provider: [openai, azure]
    input_per_mtok: 1.5
    output_per_mtok: 6
    long_context: {threshold: 100000, input_per_mtok: 3}
    effective_from: 2026-01-01
  - model_regex: "llama-3.*"
    per_hour: 2.4
  - model: prod-gpt
    price_as: gpt-4o-mini
    price_as_provider: openai
discounts:
  - provider: anthropic
    percent: 12.5
    effective_to: 2027-01-01T00:00:00Z
"""

INVALID = {
    "unknown key": "models:\n  - model: m\n    input_per_mtok: 1\n    output_per_mtok: 1\n    colour: red\n",
    "negative price": "models:\n  - model: m\n    input_per_mtok: -1\n    output_per_mtok: 1\n",
    "price as text": "models:\n  - model: m\n    input_per_mtok: cheap\n    output_per_mtok: 1\n",
    "model and regex": "models:\n  - model: m\n    model_regex: m.*\n    per_request: 1\n",
    "no model": "models:\n  - per_request: 1\n",
    "provider of price_as alone": "models:\n  - model: m\n    per_request: 1\n    price_as_provider: openai\n",
    "tier without threshold": "models:\n  - model: m\n    per_request: 1\n    long_context: {input_per_mtok: 2}\n",
    "percent over 100": "discounts:\n  - percent: 150\n",
    "discount without percent": "discounts:\n  - provider: openai\n",
    "not a date": "discounts:\n  - percent: 5\n    effective_from: next tuesday\n",
    "version 2": "version: 2\nmodels: []\n",
    "unknown section": "prices: []\n",
}


def test_a_valid_file_is_valid_for_both(tmp_path: Path):
    path = write(tmp_path, VALID)
    assert check_price_file(path) == [] and _schema_problems(path) == []


@pytest.mark.parametrize("case", sorted(INVALID))
def test_what_the_validator_refuses_the_schema_refuses_too(tmp_path: Path, case: str):
    path = write(tmp_path, INVALID[case])
    assert check_price_file(path), f"the validator accepted {case}"
    assert _schema_problems(path), f"the schema accepted {case}: an editor would not flag it"
