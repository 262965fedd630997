"""The providers' own figures: their organisation usage and cost reports, read with an admin key, as daily rows.

* OpenAI: the Usage API (``GET /v1/organization/usage/completions``) and the Costs API
  (``GET /v1/organization/costs``), with an admin key (``sk-admin-...``) from ``LLMMETER_OPENAI_ADMIN_KEY`` or
  ``OPENAI_ADMIN_KEY``.
* Anthropic: the Admin API's usage report (``GET /v1/organizations/usage_report/messages``) and cost report
  (``GET /v1/organizations/cost_report``, amounts in cents), with an admin key (``sk-ant-admin...``) from
  ``LLMMETER_ANTHROPIC_ADMIN_KEY`` or ``ANTHROPIC_ADMIN_KEY``.

Both are read in UTC day buckets, every page (``has_more`` / ``next_page``), amounts as exact decimals. The base
URLs can be pointed elsewhere (``LLMMETER_OPENAI_ADMIN_BASE_URL``, ``LLMMETER_ANTHROPIC_ADMIN_BASE_URL``): a proxy,
or the fake provider in tests. Nothing is read unless a reconcile is asked for or scheduled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

import httpx

PROVIDERS = ("openai", "anthropic")
NAMES = {"openai": "OpenAI", "anthropic": "Anthropic"}
KEY_VARIABLES = {
    "openai": ("LLMMETER_OPENAI_ADMIN_KEY", "OPENAI_ADMIN_KEY"),
    "anthropic": ("LLMMETER_ANTHROPIC_ADMIN_KEY", "ANTHROPIC_ADMIN_KEY"),
}
BASE_URLS = {
    "openai": ("LLMMETER_OPENAI_ADMIN_BASE_URL", "https://api.openai.com"),
    "anthropic": ("LLMMETER_ANTHROPIC_ADMIN_BASE_URL", "https://api.anthropic.com"),
}
GROUPS = ("", "project", "api_key")  # the provider's project (Anthropic: workspace) or API key
MAX_PAGES = 200
TIMEOUT_SECONDS = 30.0


class ReportError(Exception):
    """The provider's report could not be read; the message names the provider and the problem."""

    def __init__(self, message: str, *, configuration: bool = False) -> None:
        super().__init__(message)
        self.configuration = configuration  # a setting of the collector is missing (not the provider's fault)


@dataclass(frozen=True)
class UsageRow:
    """Tokens of one UTC day, model and group (``group``: the provider's project, workspace or API key, or '')."""

    day: date
    model: str
    group: str
    input_tokens: int  # the whole prompt, cached included (as llmmeter counts it)
    output_tokens: int
    cache_read_tokens: int
    requests: int | None


@dataclass(frozen=True)
class CostRow:
    """Dollars of one UTC day and line item; ``model`` is '' for a cost no model explains (tools, storage...)."""

    day: date
    model: str
    group: str
    item: str
    usd: Decimal


def admin_key(provider: str, env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    for name in KEY_VARIABLES[provider]:
        if env.get(name):
            return env[name]
    return None


def configured(env: Mapping[str, str] | None = None) -> list[str]:
    """The providers whose admin key is set."""
    return [p for p in PROVIDERS if admin_key(p, env)]


def read(
    provider: str,
    start: date,
    end: date,
    group_by: str = "",
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> tuple[list[UsageRow], list[CostRow]]:
    """The provider's usage and costs for the UTC days ``start`` <= day < ``end``."""
    env = os.environ if env is None else env
    key = admin_key(provider, env)
    if key is None:
        variables = " or ".join(KEY_VARIABLES[provider])
        raise ReportError(
            f"no {NAMES[provider]} admin key: set {variables} in the collector's environment", configuration=True
        )
    variable, default = BASE_URLS[provider]
    base = (env.get(variable) or default).rstrip("/")
    reader = _OpenAI(base, key, transport) if provider == "openai" else _Anthropic(base, key, transport)
    with reader:
        return reader.usage(start, end, group_by), reader.costs(start, end, group_by)


def _day(moment: date) -> datetime:
    return datetime.combine(moment, time(), tzinfo=timezone.utc)


class _Reader:
    provider = ""

    def __init__(self, base: str, headers: dict[str, str], transport: httpx.BaseTransport | None) -> None:
        self.base = base
        self.client = httpx.Client(headers=headers, timeout=TIMEOUT_SECONDS, transport=transport)

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def pages(self, path: str, params: list[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
        """Every bucket of every page of a report."""
        page: str | None = None
        for _ in range(MAX_PAGES):
            query = params + ([("page", page)] if page else [])
            body = self.get(path, query)
            data = body.get("data")
            if not isinstance(data, list):
                raise ReportError(f"{NAMES[self.provider]} {path}: the answer has no data list")
            yield from (b for b in data if isinstance(b, dict))
            if not body.get("has_more"):
                return
            page = body.get("next_page")
            if not isinstance(page, str) or not page:
                raise ReportError(f"{NAMES[self.provider]} {path}: has_more without a next_page")
        raise ReportError(f"{NAMES[self.provider]} {path}: more than {MAX_PAGES} pages; ask for a shorter range")

    def get(self, path: str, params: list[tuple[str, Any]]) -> dict[str, Any]:
        name = NAMES[self.provider]
        try:
            response = self.client.get(self.base + path, params=params)
        except httpx.HTTPError as exc:
            raise ReportError(f"cannot reach {name} at {self.base}: {exc}") from None
        if response.status_code >= 400:
            raise ReportError(f"{name} answered {response.status_code} to {path}: {_message(response)}")
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise ReportError(f"{name} {path}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise ReportError(f"{name} {path}: the answer is not a JSON object")
        return body


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return response.text[:200]
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error or response.text)[:300]


def _int(result: Mapping[str, Any], *path: str) -> int:
    value: Any = result
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return int(value) if isinstance(value, (int, Decimal)) else 0


class _OpenAI(_Reader):
    provider = "openai"

    def __init__(self, base: str, key: str, transport: httpx.BaseTransport | None) -> None:
        super().__init__(base, {"Authorization": f"Bearer {key}"}, transport)

    @staticmethod
    def _window(start: date, end: date) -> list[tuple[str, Any]]:
        return [
            ("start_time", int(_day(start).timestamp())),
            ("end_time", int(_day(end).timestamp())),
            ("bucket_width", "1d"),
        ]

    def usage(self, start: date, end: date, group_by: str) -> list[UsageRow]:
        group = {"project": "project_id", "api_key": "api_key_id"}.get(group_by)
        params = [*self._window(start, end), ("limit", 31), ("group_by", "model")]
        params += [("group_by", group)] if group else []
        rows = []
        for bucket in self.pages("/v1/organization/usage/completions", params):
            day = datetime.fromtimestamp(int(bucket["start_time"]), timezone.utc).date()
            for r in bucket.get("results") or []:
                rows.append(
                    UsageRow(
                        day, str(r.get("model") or ""), str(r.get(group) or "") if group else "",
                        _int(r, "input_tokens"), _int(r, "output_tokens"), _int(r, "input_cached_tokens"),
                        _int(r, "num_model_requests"),
                    )
                )  # fmt: skip
        return rows

    def costs(self, start: date, end: date, group_by: str) -> list[CostRow]:
        params = [*self._window(start, end), ("limit", 180), ("group_by", "line_item")]
        params += [("group_by", "project_id")] if group_by == "project" else []
        rows = []
        for bucket in self.pages("/v1/organization/costs", params):
            day = datetime.fromtimestamp(int(bucket["start_time"]), timezone.utc).date()
            for r in bucket.get("results") or []:
                amount = r.get("amount") or {}
                currency = str(amount.get("currency", "usd")).lower()
                if currency != "usd":
                    raise ReportError(f"OpenAI costs: an amount in {currency!r}; llmmeter compares USD only")
                item = str(r.get("line_item") or "")
                # line items read "<model>, input" / "<model>, cached input" / "<model>, output"
                model = item.rsplit(", ", 1)[0] if ", " in item else ""
                group = str(r.get("project_id") or "") if group_by == "project" else ""
                rows.append(CostRow(day, model, group, item, Decimal(str(amount.get("value", 0)))))
        return rows


class _Anthropic(_Reader):
    provider = "anthropic"

    def __init__(self, base: str, key: str, transport: httpx.BaseTransport | None) -> None:
        super().__init__(base, {"x-api-key": key, "anthropic-version": "2023-06-01"}, transport)

    @staticmethod
    def _window(start: date, end: date) -> list[tuple[str, Any]]:
        iso = "%Y-%m-%dT%H:%M:%SZ"
        return [
            ("starting_at", _day(start).strftime(iso)),
            ("ending_at", _day(end).strftime(iso)),
            ("bucket_width", "1d"),
            ("limit", 31),
        ]

    @staticmethod
    def _bucket_day(bucket: Mapping[str, Any]) -> date:
        return datetime.fromisoformat(str(bucket["starting_at"]).replace("Z", "+00:00")).date()

    def usage(self, start: date, end: date, group_by: str) -> list[UsageRow]:
        group = {"project": "workspace_id", "api_key": "api_key_id"}.get(group_by)
        params = [*self._window(start, end), ("group_by[]", "model")]
        params += [("group_by[]", group)] if group else []
        rows = []
        for bucket in self.pages("/v1/organizations/usage_report/messages", params):
            day = self._bucket_day(bucket)
            for r in bucket.get("results") or []:
                read_tokens = _int(r, "cache_read_input_tokens")
                written = _int(r, "cache_creation", "ephemeral_5m_input_tokens") + _int(
                    r, "cache_creation", "ephemeral_1h_input_tokens"
                )
                label = str(r.get(group) or "") if group else ""
                if group == "workspace_id" and not label:
                    label = "default workspace"
                rows.append(
                    UsageRow(
                        day, str(r.get("model") or ""), label,
                        _int(r, "uncached_input_tokens") + read_tokens + written, _int(r, "output_tokens"),
                        read_tokens, None,
                    )
                )  # fmt: skip
        return rows

    def costs(self, start: date, end: date, group_by: str) -> list[CostRow]:
        params = [*self._window(start, end), ("group_by[]", "description")]
        params += [("group_by[]", "workspace_id")] if group_by == "project" else []
        rows = []
        for bucket in self.pages("/v1/organizations/cost_report", params):
            day = self._bucket_day(bucket)
            for r in bucket.get("results") or []:
                if str(r.get("currency", "USD")).upper() != "USD":
                    raise ReportError(f"Anthropic cost report: an amount in {r.get('currency')!r}; USD only")
                try:
                    cents = Decimal(str(r.get("amount", "0")))
                except ArithmeticError:
                    raise ReportError(f"Anthropic cost report: amount {r.get('amount')!r} is not a number") from None
                group = str(r.get("workspace_id") or "default workspace") if group_by == "project" else ""
                rows.append(
                    CostRow(day, str(r.get("model") or ""), group, str(r.get("description") or ""), cents / 100)
                )
        return rows
