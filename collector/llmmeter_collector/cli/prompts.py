"""``llmmeter prompts`` and ``llmmeter experiments``: prompt versions and A/B results, over the REST API
(``api/prompts.py``)."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from llmmeter_collector.cli.common import count, get, json_option, url_option, usd
from llmmeter_collector.cli.filters import WHEN

_RANGE = (
    click.option("--since", type=WHEN, default=None, help="From this time (ISO date, today, 30d, ...)."),
    click.option("--until", type=WHEN, default=None, help="Up to this time."),
    click.option("--project", default=None, help="Only this project."),
)


def _range(f: Any) -> Any:
    for option in reversed(_RANGE):
        f = option(f)
    return f


def _params(since: Any, until: Any, project: str | None, **extra: Any) -> dict[str, Any]:
    out = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
           "project": project, **extra}  # fmt: skip
    return {k: v for k, v in out.items() if v is not None}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.0f} %"


def _money(value: str | None) -> str:
    return "-" if value is None else usd(value)


@click.group(invoke_without_command=True)
@url_option
@json_option
@_range
@click.pass_context
def prompts(ctx: click.Context, url: str, as_json: bool, since: Any, until: Any, project: str | None) -> None:
    """Prompts and their versions: calls, spend and cost per call (`prompts show NAME`, `prompts similar`)."""
    if ctx.invoked_subcommand is not None:
        return
    data = get(url, "/api/v1/prompts", _params(since, until, project))["prompts"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        click.echo("no prompts yet: calls need llmmeter's SDK (a template fingerprint) or a prompt name")
        return
    table = Table(title="prompts")
    for column in ("project", "prompt", "versions", "calls", "cost", "per call", "errors", "last seen"):
        table.add_column(column, justify="right" if column in ("versions", "calls", "cost", "per call") else "left")
    for p in data:
        table.add_row(
            p["project"] or "-", p["prompt"] or "(no feature)", str(p["versions"]), count(p["calls"]),
            usd(p["cost_usd"]), _money(p["cost_per_call_usd"]), f"{p['error_rate'] * 100:.1f} %", p["last_seen"][:16],
        )  # fmt: skip
    Console().print(table)


@prompts.command()
@click.argument("name")
@url_option
@json_option
@_range
def show(name: str, url: str, as_json: bool, since: Any, until: Any, project: str | None) -> None:
    """One prompt's versions in order, and what each version changed, in numbers."""
    data = get(url, f"/api/v1/prompts/{name}", _params(since, until, project))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"prompt {name}: versions")
    for column in ("version", "first seen", "calls", "per call", "in tokens", "out tokens", "latency", "errors"):
        table.add_column(column)
    for v in data["versions"]:
        table.add_row(
            v["version"], v["first_seen"][:16], count(v["calls"]), _money(v["cost_per_call_usd"]),
            f"{v['input_tokens_per_call']:.0f}", f"{v['output_tokens_per_call']:.0f}", f"{v['latency_s']:.2f} s",
            f"{v['error_rate'] * 100:.1f} %",
        )  # fmt: skip
    Console().print(table)
    for c in data["changes"]:
        click.echo(
            f"{c['from']} -> {c['to']}: cost per call {_pct(c['cost_per_call'])}, input tokens"
            f" {_pct(c['input_tokens_per_call'])}, output tokens {_pct(c['output_tokens_per_call'])}, latency"
            f" {_pct(c['latency_s'])}, error rate {c['error_rate_points']:+.1f} points"
        )


@prompts.command()
@click.option("--max-distance", type=click.IntRange(0, 16), default=3, show_default=True,
              help="SimHash bits apart that still count as one family (3: about 99 % similar).")  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Families to show, the most expensive first.")  # fmt: skip
@url_option
@json_option
@_range
def similar(
    max_distance: int, limit: int, url: str, as_json: bool, since: Any, until: Any, project: str | None
) -> None:
    """Near-identical prompts across features and models (needs instrument(prompt_signature=True))."""
    data = get(url, "/api/v1/prompt-families", _params(since, until, project, max_distance=max_distance, limit=limit))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data["families"]:
        click.echo("no family of similar prompts spans two features or models (or no call carries a signature)")
        return
    for f in data["families"]:
        table = Table(
            title=f"{f['similarity'] * 100:.0f} %-similar prompts: {count(f['calls'])} calls, {usd(f['cost_usd'])}"
        )
        for column in ("feature", "model", "calls", "per call", "latency", "errors", "cached"):
            table.add_column(column)
        for m in f["members"]:
            table.add_row(
                m["feature"] or "-", m["model"], count(m["calls"]), usd(m["cost_per_call_usd"]),
                f"{m['latency_s']:.2f} s", f"{m['error_rate'] * 100:.1f} %", f"{m['cached_share'] * 100:.0f} %",
            )  # fmt: skip
        Console().print(table)
    if data["total_families"] > len(data["families"]):
        click.echo(f"{len(data['families'])} of {data['total_families']} families shown (--limit)")


def _interval(sample: dict[str, Any], money: bool) -> str:
    if sample["mean"] is None:
        return "-"
    shown = usd(str(sample["mean"])) if money else f"{sample['mean']:.3f}"
    if sample["interval"] is None:
        return shown
    lo, hi = sample["interval"]
    return f"{shown} [{usd(str(lo)) if money else f'{lo:.3f}'}, {usd(str(hi)) if money else f'{hi:.3f}'}]"


@click.command()
@click.argument("name", required=False)
@click.option("--control", default=None, help="The control variant [control, baseline, a, or the first].")
@url_option
@json_option
@_range
def experiments(name: str | None, control: str | None, url: str, as_json: bool, since: Any, until: Any,
                project: str | None) -> None:  # fmt: skip
    """A/B experiments: every experiment, or NAME's variants against the control with significance tests."""
    if name is None:
        data = get(url, "/api/v1/experiments", _params(since, until, project))["experiments"]
        if as_json:
            click.echo(json.dumps(data, indent=2))
            return
        if not data:
            click.echo("no experiments yet: llmmeter.attributes(experiment=..., variant=...)")
            return
        table = Table(title="experiments")
        for column in ("experiment", "variants", "calls", "cost", "days"):
            table.add_column(column)
        for e in data:
            table.add_row(e["experiment"], ", ".join(e["variants"]), count(e["calls"]), usd(e["cost_usd"]),
                          f"{e['first_day']} .. {e['last_day']}")  # fmt: skip
        Console().print(table)
        return
    data = get(url, f"/api/v1/experiments/{name}", _params(since, until, project, control=control))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"experiment {name} (control: {data['control']})")
    for column in (
        "variant",
        "calls",
        "users",
        "cost per call [95 % CI]",
        "cost per user",
        "latency p50/p95",
        "errors",
    ):
        table.add_column(column)
    for v in data["variants"]:
        p50, p95 = v["latency_p50_s"], v["latency_p95_s"]
        table.add_row(
            v["variant"] + (" (control)" if v["control"] and v["variant"] != "control" else ""), count(v["calls"]),
            count(v["users"]),
            _interval(v["cost_per_call"], True), _interval(v["cost_per_user"], True),
            f"{p50:.2f} / {p95:.2f} s" if p50 is not None and p95 is not None else "-",
            f"{v['error_rate'] * 100:.1f} %",
        )  # fmt: skip
    Console().print(table)
    for v in data["variants"]:
        for warning in v["warnings"]:
            click.echo(f"warning: {v['variant']}: {warning}", err=True)
    for line in data["verdict"]:
        click.echo(line)
