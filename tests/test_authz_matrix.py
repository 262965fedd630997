"""The documented authorization table (docs/api.md), cell by cell, against a running collector, real keys, HTTP.

The table (docs/api.md "Authorization") is parsed here, so the documented rules and the tested rules are one
thing: every cell becomes one test case, and a route missing from the table fails the route test. ``P`` cells
check both sides: what the key owns is allowed, and what lies outside its projects is refused or invisible.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from starlette.routing import BaseRoute, Route

from llmmeter_collector.access.keys import KeyStore
from llmmeter_collector.config import Settings
from llmmeter_collector.ledger.storage import Ledger
from llmmeter_collector.llmcall import LlmCall, Usage
from llmmeter_collector.service import BackgroundCollector

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
ALPHA, BETA, GAMMA = "alpha", "beta", "gamma"
P = (ALPHA, GAMMA)  # the projects of the limited keys
WHO = ("no key", "`ingest`", "`viewer`", "`viewer` [P]", "`admin`", "`admin` [P]")


def authorization_table() -> dict[str, dict[str, str]]:
    """``{endpoint: {column: cell}}`` from the documented Authorization table."""
    text = DOC.read_text()
    section = text[text.index("\n## Authorization\n") :]
    section = section.split("\n## ", 2)[1]  # up to the next section, if any
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header == ["endpoint", *WHO], header
    table = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0].strip("`")] = dict(zip(WHO, cells[1:], strict=True))
    return table


TABLE = authorization_table()
CELLS = [(endpoint, who, cell) for endpoint, row in TABLE.items() for who, cell in row.items()]


# ------------------------------------------------------------------------------------------- the running collector


@dataclass
class Stack:
    url: str
    store: KeyStore
    keys: dict[str, str | None]
    names: dict[str, str]  # column -> key name
    routes: list[BaseRoute]
    counter: Iterator[int] = field(default_factory=itertools.count)

    def call(self, method: str, path: str, who: str, body: Any = None, **params: str) -> httpx.Response:
        key = self.keys[who]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, self.url + path, params=params, json=body, headers=headers, timeout=30)

    def admin(self, method: str, path: str, body: Any = None, **params: str) -> httpx.Response:
        return self.call(method, path, "`admin`", body, **params)

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def budget(self, projects: tuple[str, ...] | None, name: str | None = None) -> dict[str, Any]:
        """A budget body; created through the API by an admin of every project when ``name`` is None."""
        body: dict[str, Any] = {"name": name or self.unique("b"), "limit_usd": "10"}
        if projects is not None:
            body["scope"] = {"project": list(projects)}
        if name is None:
            assert self.admin("POST", "/api/v1/budgets", body).status_code == 201
        return body

    def budget_scope(self, name: str) -> list[str] | None:
        got = self.admin("GET", f"/api/v1/budgets/{name}")
        if got.status_code == 404:
            return None
        assert got.status_code == 200
        projects = got.json()["scope"].get("project", [])
        return [projects] if isinstance(projects, str) else list(projects)

    def key(self, role: str, projects: tuple[str, ...]) -> int:
        """A fresh key made directly in the store; returns its id."""
        name = self.unique("k")
        self.store.create(name, role, projects)
        return next(k.key_id for k in self.store.list_keys() if k.name == name)

    def active_key_ids(self) -> set[int]:
        return {k.key_id for k in self.store.list_keys()}


def _seed(stack_collector: BackgroundCollector) -> None:
    """Priced calls of alpha and beta over the last day, and one unpriced model in each (the newest a minute
    ago, so the current week and month hold calls of both)."""
    core = stack_collector.collector
    now = datetime.now(timezone.utc)
    calls = []
    for i in range(60):
        project = ALPHA if i % 3 == 0 else BETA  # unequal shares, so the answers tell them apart
        model = f"{project}-unknown-model" if i < 2 else "gpt-4o"
        start = int((now - timedelta(minutes=1 + 25 * i)).timestamp() * 1e9)
        call = LlmCall(
            trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", start_ns=start, end_ns=start + 10**9,
            provider="openai", operation="chat", request_model=model, project=project,
            feature=f"{project}-f{i % 2 if project == BETA else 0}", user_id=f"{project}-user", usage=Usage(1000, 100),
            template_fingerprint=f"{i % 2:016x}", experiment=f"{project}-exp", variant=("a", "b")[i % 2],
            prompt_simhash=f"{0xABCDEF0123456789 ^ (i % 2):016x}",
        )  # fmt: skip
        call.cost = core.catalog.price(call)
        calls.append(call)
    ledger = Ledger(core.dsn, core.schema)
    ledger.write(calls)
    ledger.close()


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    budgets_file = tmp_path_factory.mktemp("authz") / "budgets.yaml"
    budgets_file.write_text(
        "budgets:\n"
        "  - {name: file-alpha, limit_usd: 5, scope: {project: alpha}}\n"
        "  - {name: file-beta, limit_usd: 5, scope: {project: beta}}\n"
    )
    settings = Settings(database_url=database_url, database_schema=schema, http_port=0, budgets_file=str(budgets_file))
    try:
        with BackgroundCollector(settings, grpc=False) as running:
            _seed(running)
            store = running.collector.keys
            names = {
                "`ingest`": "authz-ingest",
                "`viewer`": "authz-viewer",
                "`viewer` [P]": "authz-viewer-p",
                "`admin`": "authz-admin",
                "`admin` [P]": "authz-admin-p",
            }
            keys: dict[str, str | None] = {"no key": None}
            for who, name in names.items():
                role = who.split("`")[1]
                keys[who] = store.create(name, role, P if "[P]" in who else ())
            stack = Stack(running.url, store, keys, names, list(running.collector.app().routes))
            for name, projects in (("alpha-b", (ALPHA,)), ("beta-b", (BETA,)), ("global-b", None)):
                body = stack.budget(projects, name=name)
                assert stack.admin("POST", "/api/v1/budgets", body).status_code == 201
            yield stack
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# ----------------------------------------------------------------------------------------------- spend reads


def _projects_of_rows(rows: list[dict[str, Any]]) -> set[str]:
    return {r["project"] for r in rows}


# endpoint -> (path, what the answer shows: a comparable value, takes ?project=)
READS: dict[str, tuple[str, Callable[[httpx.Response], Any], bool]] = {
    "GET /api/v1/summary": ("/api/v1/summary", lambda r: r.json()["spend"]["all"], True),
    "GET /api/v1/calls": ("/api/v1/calls", lambda r: sorted(c["span_id"] for c in r.json()["calls"]), True),
    "GET /api/v1/export": ("/api/v1/export", lambda r: sorted(r.text.splitlines()), True),
    "GET /api/v1/export/focus": ("/api/v1/export/focus", lambda r: sorted(r.text.splitlines()), True),
    "GET /api/v1/prompts": ("/api/v1/prompts", lambda r: sorted(p["prompt"] for p in r.json()["prompts"]), True),
    "GET /api/v1/experiments": (
        "/api/v1/experiments",
        lambda r: sorted(e["experiment"] for e in r.json()["experiments"]),
        True,
    ),
    "GET /api/v1/usage": (
        "/api/v1/usage",
        lambda r: sorted(json.dumps(u, sort_keys=True) for u in r.json()["usage"]),
        True,
    ),
    "GET /api/v1/recommendations": ("/api/v1/recommendations", lambda r: r.json()["calls"], True),
    "GET /api/v1/forecast": ("/api/v1/forecast", lambda r: r.json()["spent_usd"], True),
    "GET /api/v1/anomalies": ("/api/v1/anomalies", lambda r: r.json()["series_checked"], True),
    "GET /api/v1/report": ("/api/v1/report", lambda r: _projects_of_rows(r.json()["by_project"]), False),
    "GET /api/v1/prices": ("/api/v1/prices", lambda r: {m["model"] for m in r.json()["unpriced_models"]}, False),
    "GET /api/v1/dimensions": ("/api/v1/dimensions", lambda r: set(r.json()["projects"]), False),
    "GET /api/v1/doctor": ("/api/v1/doctor", lambda r: {m["model"] for m in r.json()["unpriced_models"]}, False),
}
_READ_PARAMS = {
    "/api/v1/summary": {"period": "all"},
    "/api/v1/calls": {"limit": "1000"},
    "/api/v1/export": {"format": "jsonl"},
    "/api/v1/report": {"period": "month", "current": "true"},
    "/api/v1/usage": {
        "since": (datetime.now(timezone.utc) - timedelta(days=3)).date().isoformat(),
        "until": (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat(),
    },
}


def check_read(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    path, shown, filters = READS[endpoint]
    params = _READ_PARAMS.get(path, {})
    answer = stack.call("GET", path, who, **params)
    if cell in ("401", "403"):
        assert answer.status_code == int(cell), answer.text
        assert stack.call("GET", path, who, project=ALPHA, **params).status_code == int(cell)
        return
    assert answer.status_code == 200, answer.text
    if filters:
        alpha_only = shown(stack.admin("GET", path, project=ALPHA, **params))
        beta_only = shown(stack.admin("GET", path, project=BETA, **params))
        assert alpha_only != beta_only  # the seed makes the two projects tell apart
    elif path in ("/api/v1/report", "/api/v1/dimensions"):
        alpha_only, beta_only = {ALPHA}, {BETA}
    else:
        alpha_only, beta_only = {f"{ALPHA}-unknown-model"}, {f"{BETA}-unknown-model"}
    if path == "/api/v1/dimensions":  # takes no ?project=: it lists what the key sees
        assert shown(answer) == (alpha_only if cell == "P" else shown(answer) | alpha_only | beta_only)
        return
    beyond = stack.call("GET", path, who, project=BETA, **params)
    if cell == "all":
        assert beyond.status_code == 200
        if filters:
            assert shown(beyond) == beta_only
            assert shown(answer) not in (alpha_only, beta_only)  # sees both projects
        else:
            assert shown(answer) >= alpha_only | beta_only
    else:
        assert cell == "P"
        assert shown(answer) == alpha_only  # P holds alpha (and gamma, which has no calls)
        assert beyond.status_code == 403 and "project" in beyond.json()["error"]
        assert stack.call("GET", path, who, project=ALPHA, **params).status_code == 200


# -------------------------------------------------------------------------------------------------- budgets


def _budget_names(answer: httpx.Response, key: str = "budgets") -> set[str]:
    assert answer.status_code == 200, answer.text
    return {b["name"] if "name" in b else b["budget"] for b in answer.json()[key]}


def check_budget_list(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    path = endpoint.split(" ")[1]
    answer = stack.call("GET", path, who)
    if cell in ("401", "403"):
        assert answer.status_code == int(cell), answer.text
        return
    names = _budget_names(answer)
    if cell == "all":
        assert {"alpha-b", "beta-b", "global-b", "file-alpha", "file-beta"} <= names
    else:
        assert {"alpha-b", "file-alpha"} <= names
        for name in names:
            scope = stack.budget_scope(name)
            assert scope and set(scope) <= set(P), (name, scope)


def check_budget_get(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    get = lambda name: stack.call("GET", f"/api/v1/budgets/{name}", who).status_code  # noqa: E731
    if cell in ("401", "403"):
        assert get("alpha-b") == int(cell)
        return
    assert get("alpha-b") == 200 and get("file-alpha") == 200
    others = {name: get(name) for name in ("beta-b", "global-b", "file-beta")}
    assert others == dict.fromkeys(others, 200 if cell == "all" else 404)


def check_budget_create(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    post = lambda body: stack.call("POST", "/api/v1/budgets", who, body)  # noqa: E731
    if cell in ("401", "403"):
        body = stack.budget((ALPHA,), name=stack.unique("new"))
        assert post(body).status_code == int(cell)
        assert stack.budget_scope(body["name"]) is None
        return
    own = stack.budget((ALPHA,), name=stack.unique("new"))
    assert post(own).status_code == 201 and stack.budget_scope(own["name"]) == [ALPHA]
    outside = [(BETA,), (ALPHA, BETA), None]  # another project, one too many, every project
    for projects in outside:
        body = stack.budget(projects, name=stack.unique("new"))
        answer = post(body)
        if cell == "all":
            assert answer.status_code == 201, answer.text
        else:
            assert answer.status_code == 403, (projects, answer.text)
            assert stack.budget_scope(body["name"]) is None


def check_budget_replace(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    def put(name: str, projects: tuple[str, ...] | None) -> int:
        return stack.call("PUT", f"/api/v1/budgets/{name}", who, stack.budget(projects, name=name)).status_code

    if cell in ("401", "403"):
        mine = stack.budget((ALPHA,))["name"]
        assert put(mine, (GAMMA,)) == int(cell) and stack.budget_scope(mine) == [ALPHA]
        return
    mine = stack.budget((ALPHA,))["name"]
    assert put(mine, (ALPHA, GAMMA)) == 200 and stack.budget_scope(mine) == [ALPHA, GAMMA]
    fresh = stack.unique("new")
    assert put(fresh, (GAMMA,)) == 200 and stack.budget_scope(fresh) == [GAMMA]
    moved_out = stack.budget((ALPHA,))["name"]  # the new scope is checked
    taken_over = stack.budget((BETA,))["name"]  # the stored scope is checked (issue #16: beta's budget replaced)
    everything = stack.budget(None)["name"]
    new_beta = stack.unique("new")
    answers = {
        "moved_out": put(moved_out, (BETA,)),
        "taken_over": put(taken_over, (ALPHA,)),
        "everything": put(everything, (ALPHA,)),
        "new_beta": put(new_beta, (BETA,)),
        "file": put("file-beta", (ALPHA,)),
    }
    if cell == "all":
        assert answers == {**dict.fromkeys(answers, 200), "file": 409}
        return
    assert answers == dict.fromkeys(answers, 403)
    assert stack.budget_scope(moved_out) == [ALPHA] and stack.budget_scope(taken_over) == [BETA]
    assert stack.budget_scope(everything) == [] and stack.budget_scope(new_beta) is None


def check_budget_delete(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    delete = lambda name: stack.call("DELETE", f"/api/v1/budgets/{name}", who).status_code  # noqa: E731
    mine = stack.budget((ALPHA,))["name"]
    if cell in ("401", "403"):
        assert delete(mine) == int(cell) and stack.budget_scope(mine) == [ALPHA]
        return
    assert delete(mine) == 200 and stack.budget_scope(mine) is None
    theirs, everything = stack.budget((BETA,))["name"], stack.budget(None)["name"]
    if cell == "all":
        assert (delete(theirs), delete(everything)) == (200, 200)
        assert delete("file-beta") == 409  # file budgets are read-only for everyone
        return
    assert (delete(theirs), delete(everything), delete("file-beta")) == (404, 404, 404)
    assert stack.budget_scope(theirs) == [BETA] and stack.budget_scope(everything) == []


def check_global_change(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    answer = stack.call("POST", endpoint.split(" ")[1], who)
    assert answer.status_code == (200 if cell == "all" else int(cell)), answer.text


# ----------------------------------------------------------------------------------------------------- reprices

_WEEK = {"from": (datetime.now(timezone.utc) - timedelta(days=7)).date().isoformat(),
         "to": datetime.now(timezone.utc).date().isoformat()}  # fmt: skip


def _reprice(stack: Stack, who: str, **params: str) -> httpx.Response:
    """Start a dry reprice of the seeded week as ``who``; when accepted, wait for the run to finish."""
    answer = stack.call("POST", "/api/v1/prices/reprice", who, **_WEEK, dry_run="true", **params)
    if answer.status_code != 202:
        return answer
    run = answer.json()
    for _ in range(200):
        if run["status"] != "running":
            break
        run = stack.admin("GET", f"/api/v1/prices/reprices/{run['id']}").json()
    assert run["status"] == "done", run
    return httpx.Response(202, json=run)


def check_reprice(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    answer = _reprice(stack, who)
    if cell in ("401", "403"):
        assert answer.status_code == int(cell), answer.text
        return
    run = answer.json()
    if cell == "all":
        assert run["projects"] is None and run["examined"] == 60  # every seeded call, alpha's and beta's
        assert _reprice(stack, who, project=BETA).json()["examined"] == 40
        return
    assert run["projects"] == list(P) and run["examined"] == 20  # only alpha's calls (gamma has none)
    beyond = _reprice(stack, who, project=BETA)
    assert beyond.status_code == 403 and "project" in beyond.json()["error"]


def _runs_of(stack: Stack) -> tuple[int, int]:
    """A run of every project and a run limited to P (started by the two admin keys)."""
    return _reprice(stack, "`admin`").json()["id"], _reprice(stack, "`admin` [P]").json()["id"]


def check_reprice_list(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    every, limited = _runs_of(stack)
    answer = stack.call("GET", "/api/v1/prices/reprices", who)
    if cell in ("401", "403"):
        assert answer.status_code == int(cell), answer.text
        return
    listed = {r["id"]: r for r in answer.json()["runs"]}
    assert limited in listed and listed[limited]["actor"].endswith("(authz-admin-p)")
    if cell == "all":
        assert every in listed
    else:
        assert every not in listed and all(r["projects"] and set(r["projects"]) <= set(P) for r in listed.values())


def check_reprice_get(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    every, limited = _runs_of(stack)
    get = lambda run_id: stack.call("GET", f"/api/v1/prices/reprices/{run_id}", who).status_code  # noqa: E731
    if cell in ("401", "403"):
        assert (get(every), get(limited)) == (int(cell), int(cell))
        return
    assert (get(every), get(limited)) == ((200, 200) if cell == "all" else (404, 200))


def check_reconcile(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    """The provider's reports cover the whole organisation: only an admin key of every project reads them."""
    from llmmeter_collector.devtools.fakeprovider import FakeProvider

    with FakeProvider() as fake, pytest.MonkeyPatch.context() as env:
        env.setenv("LLMMETER_OPENAI_ADMIN_KEY", "sk-admin-authz")
        env.setenv("LLMMETER_OPENAI_ADMIN_BASE_URL", fake.url)
        answer = stack.call("GET", "/api/v1/reconcile", who, provider="openai")
    assert answer.status_code == (200 if cell == "all" else int(cell)), answer.text
    if cell == "all":
        assert answer.json()["provider"] == "openai" and answer.json()["provider_usd"] == "0"  # the fake billed nothing


def check_focus_import(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    """A cloud's bill covers the whole organisation: only an admin key of every project imports one."""
    day = datetime.now(timezone.utc).strftime("%Y-%m-%dT00:00:00Z")
    row = {"BilledCost": "1", "EffectiveCost": "1", "BillingCurrency": "USD", "ChargePeriodStart": day,
           "ChargePeriodEnd": day.replace("T00", "T23"), "ServiceName": "Amazon Bedrock", "ChargeCategory": "Usage",
           "ProviderName": "AWS", "_row": 1}  # fmt: skip
    body = {"file_name": "f.csv", "sha256": stack.unique("sha"), "rows_read": 1, "columns": list(row)[:-1],
            "rows": [row]}  # fmt: skip
    answer = stack.call("POST", "/api/v1/focus/import", who, body)
    assert answer.status_code == (201 if cell == "all" else int(cell)), answer.text


def check_focus_costs(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    answer = stack.call("GET", "/api/v1/focus/costs", who)
    assert answer.status_code == (200 if cell == "all" else int(cell)), answer.text
    if cell == "all":
        assert "imports" in answer.json()


def check_named_read(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    """A prompt or an experiment of another project answers 404 to a key limited to P, as if it did not exist."""
    path = endpoint.split(" ")[1]
    mine, theirs = (path.replace("{name}", f"{p}-f0" if "prompts" in path else f"{p}-exp") for p in (ALPHA, BETA))
    answers = (stack.call("GET", mine, who).status_code, stack.call("GET", theirs, who).status_code)
    if cell in ("401", "403"):
        assert answers == (int(cell), int(cell))
        return
    assert answers == ((200, 200) if cell == "all" else (200, 404))


def check_families(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    answer = stack.call("GET", "/api/v1/prompt-families", who, max_distance="2")
    if cell in ("401", "403"):
        assert answer.status_code == int(cell)
        return
    projects = {m["project"] for f in answer.json()["families"] for m in f["members"]}
    assert projects == ({ALPHA, BETA} if cell == "all" else {ALPHA})
    beyond = stack.call("GET", "/api/v1/prompt-families", who, project=BETA)
    assert beyond.status_code == (200 if cell == "all" else 403)


def check_sdk_versions(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    answer = stack.call("GET", "/api/v1/sdk-versions", who)
    assert answer.status_code == (200 if cell == "all" else int(cell)), answer.text
    if cell == "all":
        assert "sdk_versions" in answer.json()


def check_webhooks(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    """Events of every project: an admin key of every project subscribes, lists, reads logs and removes."""
    made = stack.admin("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["anomaly"]})
    assert made.status_code == 201
    webhook_id = made.json()["id"]
    method, path = endpoint.split(" ")
    path = path.replace("{webhook_id}", str(webhook_id))
    body = {"url": "http://127.0.0.1:9/other", "events": ["anomaly"]} if method == "POST" else None
    answer = stack.call(method, path, who, body)
    expected = {"POST": 201}.get(method, 200) if cell == "all" else int(cell)
    assert answer.status_code == expected, answer.text


def check_audit(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    """Every project's audit trail: an admin key of every project only (the refused reads are in it)."""
    answer = stack.call("GET", "/api/v1/audit", who)
    assert answer.status_code == (200 if cell == "all" else int(cell)), answer.text
    if cell == "all":
        assert any(e["status"] in (401, 403) for e in answer.json()["entries"])


# ----------------------------------------------------------------------------------------------------- keys


def check_keys_list(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    answer = stack.call("GET", "/api/v1/keys", who)
    if cell in ("401", "403"):
        assert answer.status_code == int(cell)
        return
    assert answer.status_code == 200
    listed = {k["name"]: k["projects"] for k in answer.json()["keys"]}
    assert all("key" not in k for k in answer.json()["keys"])
    if cell == "all":
        assert set(stack.names.values()) <= set(listed)
        return
    assert {"authz-viewer-p", "authz-admin-p"} <= set(listed)
    assert all(projects and set(projects) <= set(P) for projects in listed.values()), listed


def check_keys_create(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    def create(role: str, projects: list[str]) -> tuple[int, str]:
        name = stack.unique("created")
        answer = stack.call("POST", "/api/v1/keys", who, {"name": name, "role": role, "projects": projects})
        return answer.status_code, name

    existing = lambda: {k.name for k in stack.store.list_keys()}  # noqa: E731
    if cell in ("401", "403"):
        status, name = create("viewer", [ALPHA])
        assert status == int(cell) and name not in existing()
        return
    for role in ("ingest", "viewer", "admin"):  # never a higher role than the caller's: admin is the top
        status, name = create(role, [ALPHA])
        assert status == 201 and name in existing()
    outside = {"every project": [], "another project": [BETA], "one too many": [ALPHA, BETA]}
    for what, projects in outside.items():
        status, name = create("admin", projects)
        if cell == "all":
            assert status == 201, what
        else:
            assert status == 403 and name not in existing(), what


def check_keys_revoke(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    revoke = lambda key_id: stack.call("DELETE", f"/api/v1/keys/{key_id}", who).status_code  # noqa: E731
    mine = stack.key("viewer", (ALPHA,))
    if cell in ("401", "403"):
        assert revoke(mine) == int(cell) and mine in stack.active_key_ids()
        return
    assert revoke(mine) == 200 and mine not in stack.active_key_ids()
    theirs, everything, mixed = stack.key("ingest", (BETA,)), stack.key("admin", ()), stack.key("viewer", (ALPHA, BETA))
    answers = (revoke(theirs), revoke(everything), revoke(mixed))
    if cell == "all":
        assert answers == (200, 200, 200)
        return
    assert answers == (404, 404, 404)
    assert {theirs, everything, mixed} <= stack.active_key_ids()


def check_openapi(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    assert cell == "all"
    answer = stack.call("GET", "/api/v1/openapi.json", who)
    assert answer.status_code == 200 and "/api/v1/summary" in answer.json()["paths"]


CHECKS: dict[str, Callable[[Stack, str, str, str], None]] = {
    "GET /api/v1/openapi.json": check_openapi,
    **dict.fromkeys(READS, check_read),
    "GET /api/v1/budgets": check_budget_list,
    "GET /api/v1/budgets/status": check_budget_list,
    "GET /api/v1/budgets/{name}": check_budget_get,
    "POST /api/v1/budgets": check_budget_create,
    "PUT /api/v1/budgets/{name}": check_budget_replace,
    "DELETE /api/v1/budgets/{name}": check_budget_delete,
    "POST /api/v1/budgets/reload": check_global_change,
    "POST /api/v1/prices/reload": check_global_change,
    "POST /api/v1/prices/reprice": check_reprice,
    "GET /api/v1/prices/reprices": check_reprice_list,
    "GET /api/v1/prices/reprices/{run_id}": check_reprice_get,
    "GET /api/v1/reconcile": check_reconcile,
    "GET /api/v1/prompts/{name}": check_named_read,
    "GET /api/v1/experiments/{name}": check_named_read,
    "GET /api/v1/prompt-families": check_families,
    "GET /api/v1/sdk-versions": check_sdk_versions,
    "GET /api/v1/audit": check_audit,
    **dict.fromkeys(
        (
            "POST /api/v1/webhooks",
            "GET /api/v1/webhooks",
            "DELETE /api/v1/webhooks/{webhook_id}",
            "GET /api/v1/webhooks/{webhook_id}/deliveries",
        ),
        check_webhooks,
    ),
    "POST /api/v1/focus/import": check_focus_import,
    "GET /api/v1/focus/costs": check_focus_costs,
    "GET /api/v1/keys": check_keys_list,
    "POST /api/v1/keys": check_keys_create,
    "DELETE /api/v1/keys/{id}": check_keys_revoke,
}


@pytest.mark.parametrize(("endpoint", "who", "cell"), CELLS, ids=[f"{e} | {w} | {c}" for e, w, c in CELLS])
def test_authorization_cell(stack: Stack, endpoint: str, who: str, cell: str) -> None:
    assert cell in ("all", "P", "401", "403"), f"unknown cell {cell!r}"
    CHECKS[endpoint](stack, endpoint, who, cell)


def test_every_api_route_is_in_the_table(stack: Stack) -> None:
    """Every /api route the collector serves (Starlette's route table) is a row, and every row is checked."""
    served = set()
    for route in stack.routes:
        if isinstance(route, Route) and route.path.startswith("/api/"):
            for method in route.methods or ():
                if method != "HEAD":
                    served.add(f"{method} {route.path.replace('{key_id}', '{id}')}")
    assert served == set(TABLE), (served - set(TABLE), set(TABLE) - served)
    assert set(CHECKS) == set(TABLE)
