"""Prompts and their versions: cost, tokens, latency and error rate per version, and what each version changed.

A prompt is named explicitly (``llmmeter.attributes(prompt="summarise", prompt_version="3")``, a LangChain prompt
template's name, Langfuse's prompt attributes) or, when it is not, is the feature's prompt (named after the feature).
A version is the explicit one when given; otherwise versions are told apart by the template fingerprint (the prompt's
instructions and structure, see the SDK's ``content.py``): each new template is a new version, numbered in the
order it first appeared (``v1``, ``v2``, ...). Everything is read from the daily prompt rollup.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg_pool import ConnectionPool

from llmmeter_collector.insights import daily

_NAME = "CASE WHEN prompt_name <> '' THEN prompt_name ELSE feature END"
# A version: the explicit one when given (whatever its template), else the template.
_VERSION = "CASE WHEN prompt_version <> '' THEN prompt_version ELSE '' END"
_TEMPLATE = "CASE WHEN prompt_version <> '' THEN '' ELSE template_fingerprint END"


def prompts(
    pool: ConnectionPool, *, since: datetime | None = None, until: datetime | None = None,
    projects: Sequence[str] | None = None, project: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every prompt: its versions, calls, spend, and when its latest version appeared."""
    where, params = daily.where(since, until, projects, project)
    with pool.connection() as conn:
        rows = conn.execute(
            f"""SELECT project, {_NAME} AS name, count(DISTINCT ({_VERSION}, {_TEMPLATE})),
                       sum(calls), sum(errors), sum(cost_usd), sum(unpriced_calls), min(first_seen), max(last_seen),
                       array_agg(DISTINCT feature), array_agg(DISTINCT model)
                FROM llm_rollup_prompt_day WHERE {where} GROUP BY 1, 2 ORDER BY 6 DESC, 1, 2""",
            params,
        ).fetchall()
    return [
        {"project": p, "prompt": n, "versions": int(v), "calls": int(c), "error_rate": int(e) / int(c),
         "cost_usd": format(usd, "f"), "cost_per_call_usd": format(usd / (int(c) - int(u)), "f") if int(c) > int(u)
         else None, "unpriced_calls": int(u), "first_seen": lo.isoformat(), "last_seen": hi.isoformat(),
         "features": sorted(f for f in fs if f), "models": sorted(models)}
        for p, n, v, c, e, usd, u, lo, hi, fs, models in rows
    ]  # fmt: skip


def _change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    def rel(key: str) -> float | None:
        a, b = before[key], after[key]
        if a is None or b is None or not a:
            return None
        return (float(b) - float(a)) / float(a)

    return {
        "from": before["version"], "to": after["version"],
        "cost_per_call": rel("cost_per_call_usd"), "input_tokens_per_call": rel("input_tokens_per_call"),
        "output_tokens_per_call": rel("output_tokens_per_call"), "latency_s": rel("latency_s"),
        "error_rate_points": (after["error_rate"] - before["error_rate"]) * 100,
    }  # fmt: skip


def show(
    pool: ConnectionPool, name: str, *, since: datetime | None = None, until: datetime | None = None,
    projects: Sequence[str] | None = None, project: str | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """One prompt's versions in the order they appeared, each one's figures, what each change did, and its daily
    series; None when there is no such prompt."""
    where, params = daily.where(since, until, projects, project)
    params["name"] = name
    with pool.connection() as conn:
        rows = conn.execute(
            f"""SELECT {_VERSION}, {_TEMPLATE}, min(first_seen), max(last_seen), sum(calls), sum(errors),
                       sum(unpriced_calls), sum(input_tokens), sum(output_tokens), sum(cost_usd), sum(duration_s),
                       array_agg(DISTINCT model), array_agg(DISTINCT feature), array_agg(DISTINCT project)
                FROM llm_rollup_prompt_day WHERE {where} AND {_NAME} = %(name)s
                GROUP BY 1, 2 ORDER BY 3, 1, 2""",
            params,
        ).fetchall()
        days = conn.execute(
            f"""SELECT bucket, {_VERSION}, {_TEMPLATE}, sum(calls), sum(unpriced_calls), sum(cost_usd),
                       sum(duration_s), sum(errors), sum(input_tokens), sum(output_tokens)
                FROM llm_rollup_prompt_day WHERE {where} AND {_NAME} = %(name)s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
            params,
        ).fetchall()
    if not rows:
        return None
    versions = []
    labels: dict[tuple[str, str], str] = {}
    detected = 0
    for ver, fp, first, last, calls, errors, unpriced, inp, out, cost, dur, models, features, prjs in rows:
        calls, priced = int(calls), int(calls) - int(unpriced)
        detected += not ver
        label = ver or f"v{detected}"  # detected versions are numbered in the order they appeared
        labels[(ver, fp)] = label
        versions.append({
            "version": label, "explicit_version": ver or None, "template_fingerprint": fp or None,
            "first_seen": first.isoformat(), "last_seen": last.isoformat(), "calls": calls,
            "cost_usd": format(cost, "f"),
            "cost_per_call_usd": format(cost / priced, "f") if priced else None,
            "input_tokens_per_call": int(inp) / calls, "output_tokens_per_call": int(out) / calls,
            "latency_s": float(dur) / calls, "error_rate": int(errors) / calls, "unpriced_calls": int(unpriced),
            "models": sorted(models), "features": sorted(f for f in features if f), "projects": sorted(prjs),
        })  # fmt: skip
    series = [
        {"day": d.date().isoformat(), "version": labels[(ver, fp)], "calls": int(c),
         "cost_per_call_usd": format(usd / (int(c) - int(u)), "f") if int(c) > int(u) else None,
         "latency_s": float(dur) / int(c), "error_rate": int(e) / int(c),
         "input_tokens_per_call": int(i) / int(c), "output_tokens_per_call": int(o) / int(c)}
        for d, ver, fp, c, u, usd, dur, e, i, o in days
    ]  # fmt: skip
    changes = [_change(a, b) for a, b in itertools.pairwise(versions)]
    return {"prompt": name, "versions": versions, "changes": changes, "series": series,
            "current": versions[-1]["version"], "total_cost_usd": format(sum((Decimal(v["cost_usd"]) for v in versions),
                                                                             Decimal(0)), "f")}  # fmt: skip
