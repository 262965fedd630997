"""Prompt families: near-identical prompts across features and models, found by their SimHash signatures alone.

The SDK (``instrument(prompt_signature=True)``) sends a 64-bit SimHash of each prompt's word shingles; two prompts
whose signatures differ in ``d`` of 64 bits have a cosine similarity of about cos(pi * d / 64) (d = 3: 99 %, d = 6:
96 %). Signatures within ``max_distance`` bits are one family (single linkage), found through bands: cut into more
bands than ``max_distance``, any two such signatures share a whole band, so only pairs sharing one are compared
(exact; a larger distance means narrower bands and more pairs to compare). Read from the monthly signature rollup
(``since`` counts from the start of its month): the text is never needed.

A prompt's signature varies from call to call with its variable part, so the rollup does not keep signatures: per
month, project, feature, model and template it counts the calls that set each bit, and a group's **centroid** (the
bitwise majority) stands for its prompts. Families are found among centroids: prompts that share their fixed part
(the template, a long system prompt) have close centroids, whatever their variable parts.

A family spanning several features is a shared prefix worth caching; one spanning several models compares them on
the same prompts, side by side (``recommendations`` turns both into savings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg_pool import ConnectionPool

from llmmeter_collector.insights import daily

DEFAULT_DISTANCE = 3  # about 99 % similar; 4 bands of 16 bits: few pairs to compare
MAX_DISTANCE = 16


@dataclass(slots=True)
class Member:
    """One project, feature and model's calls with one signature."""

    project: str
    feature: str
    model: str
    signature: int
    calls: int
    errors: int
    input_tokens: int
    cache_read_tokens: int
    output_tokens: int
    cost: Decimal
    duration: float


@dataclass
class Family:
    members: list[Member] = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(m.calls for m in self.members)

    @property
    def cost(self) -> Decimal:
        return sum((m.cost for m in self.members), Decimal(0))


def similarity(distance: int) -> float:
    """The cosine similarity two SimHash signatures ``distance`` bits apart stand for."""
    return math.cos(math.pi * distance / 64)


def centroid(bits: Sequence[int], calls: int) -> int:
    """The majority signature of a group of calls from its per-bit counts (``bits[0]``: the most significant bit)."""
    signature = 0
    for k, ones in enumerate(bits):
        if 2 * ones > calls:
            signature |= 1 << (63 - k)
    return signature


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _bands(max_distance: int) -> int:
    """How many equal bands to cut 64 bits into so that two signatures within ``max_distance`` bits share one
    whole band (pigeonhole: more bands than differing bits)."""
    return next(b for b in (1, 2, 4, 8, 16, 32, 64) if b > max_distance)


def cluster(signatures: Sequence[int], max_distance: int) -> list[list[int]]:
    """Indexes of ``signatures`` grouped so that any two within ``max_distance`` bits are in one group (exactly:
    every such pair shares a band, and only pairs sharing a band are compared)."""
    parent = list(range(len(signatures)))
    bands = _bands(max_distance)
    width = 64 // bands
    mask = (1 << width) - 1
    buckets: dict[int, list[int]] = {}
    for i, sig in enumerate(signatures):
        for band in range(bands):
            key = band << 64 | (sig >> (width * band) & mask)  # the band's number above its 64 bits
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = [i]
            else:
                bucket.append(i)
    for members in buckets.values():
        if len(members) < 2:
            continue
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                i, j = members[a], members[b]
                if (signatures[i] ^ signatures[j]).bit_count() <= max_distance:
                    ri, rj = _find(parent, i), _find(parent, j)
                    if ri != rj:
                        parent[rj] = ri
    groups: dict[int, list[int]] = {}
    for i in range(len(signatures)):
        groups.setdefault(_find(parent, i), []).append(i)
    return list(groups.values())


def families(
    pool: ConnectionPool, *, since: datetime | None = None, until: datetime | None = None,
    projects: Sequence[str] | None = None, max_distance: int = DEFAULT_DISTANCE, min_calls: int = 1,
) -> list[Family]:  # fmt: skip
    """Families of similar prompts with more than one member (feature or model), the most expensive first."""
    where, params = daily.where(since, until, projects, unit="month")
    with pool.connection() as conn:
        rows = conn.execute(
            f"""SELECT project, feature, model, template_fingerprint, calls, errors, input_tokens, cache_read_tokens,
                       output_tokens, cost_usd, duration_s, bits
                FROM llm_rollup_signature_day WHERE {where}""",
            params,
        ).fetchall()
    groups: dict[tuple[str, str, str, str], list[Any]] = {}
    for p, f, m, t, *sums, bits in rows:  # a group's months added up
        acc = groups.get((p, f, m, t))
        if acc is None:
            groups[(p, f, m, t)] = [*sums, list(bits)]
        else:
            for i, value in enumerate(sums):
                acc[i] += value
            acc[-1] = [a + b for a, b in zip(acc[-1], bits, strict=True)]
    members = [
        Member(p, f, m, centroid(bits, c), int(c), int(e), int(i), int(cr), int(o), usd, float(d))
        for (p, f, m, _), (c, e, i, cr, o, usd, d, bits) in groups.items()
        if c >= min_calls
    ]
    by_signature: dict[int, list[Member]] = {}
    for m in members:
        by_signature.setdefault(m.signature, []).append(m)
    distinct = sorted(by_signature)
    found = []
    for group in cluster(distinct, max_distance):
        family = Family([m for i in group for m in by_signature[distinct[i]]])
        if len({(m.project, m.feature, m.model) for m in family.members}) > 1:
            found.append(family)
    return sorted(found, key=lambda f: f.cost, reverse=True)


def _spread(family: Family) -> int:
    sigs = [m.signature for m in family.members]
    return max(((a ^ b).bit_count() for a in sigs for b in sigs), default=0)


def family_json(family: Family) -> dict[str, Any]:
    """A family as the API shows it: its members grouped by feature and model, side by side."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for m in family.members:
        row = rows.setdefault((m.project, m.feature, m.model), {
            "project": m.project, "feature": m.feature, "model": m.model, "calls": 0, "errors": 0,
            "input_tokens": 0, "cache_read_tokens": 0, "output_tokens": 0, "cost": Decimal(0), "duration": 0.0,
        })  # fmt: skip
        for key in ("calls", "errors", "input_tokens", "cache_read_tokens", "output_tokens"):
            row[key] += getattr(m, key)
        row["cost"] += m.cost
        row["duration"] += m.duration
    members = []
    for row in sorted(rows.values(), key=lambda r: -r["cost"]):
        calls = row["calls"]
        members.append({
            "project": row["project"], "feature": row["feature"], "model": row["model"], "calls": calls,
            "cost_usd": format(row["cost"], "f"), "cost_per_call_usd": format(row["cost"] / calls, "f"),
            "input_tokens_per_call": row["input_tokens"] / calls,
            "output_tokens_per_call": row["output_tokens"] / calls,
            "cached_share": row["cache_read_tokens"] / row["input_tokens"] if row["input_tokens"] else 0.0,
            "latency_s": row["duration"] / calls, "error_rate": row["errors"] / calls,
        })  # fmt: skip
    spread = _spread(family)
    features = sorted({(m["project"], m["feature"]) for m in members})
    models = sorted({m["model"] for m in members})
    return {
        "calls": family.calls, "cost_usd": format(family.cost, "f"), "signatures": len({m.signature for m in
                                                                                      family.members}),
        "max_distance_bits": spread, "similarity": round(similarity(spread), 3),
        "features": [f"{p}/{f}" if p else f for p, f in features], "models": models, "members": members,
    }  # fmt: skip
