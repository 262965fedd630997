"""The budget policy an app opts into: which calls to swap to a cheaper model or refuse when a budget is over.

``llmmeter.instrument(budget_policy="policy.yaml")`` (YAML needs PyYAML; ``.json`` files and dicts work with
the standard library alone)::

    collector_url: http://llmmeter:4318   # optional; default LLMMETER_URL, else the OTLP endpoint
    refresh_seconds: 30                   # how often budget state is fetched in the background
    rules:                                # first matching rule wins
      - budget: search-team               # a budget name known to the collector
        over: 100%                        # utilisation at or above which the rule applies (default 100%)
        match: {feature: search, model: gpt-4o}   # optional: attribution, provider, model (a value or a list)
        use: gpt-4o-mini                  # swap the model ...
      - budget: total
        over: 100%
        raise: true                       # ... or raise llmmeter.BudgetExceeded

``match`` keys: project, feature, user, session, environment, experiment, variant, provider, model, and
``tags: {name: value}`` (or ``tag.<name>``); they compare with ``llmmeter.attributes(...)`` of the call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmmeter import semconv

# match key -> span attribute set by llmmeter.attributes(...)
MATCH_ATTRIBUTES = {
    "project": semconv.PROJECT,
    "feature": semconv.FEATURE,
    "user": semconv.USER_ID,
    "session": semconv.SESSION_ID,
    "environment": semconv.ENVIRONMENT,
    "experiment": semconv.EXPERIMENT,
    "variant": semconv.VARIANT,
}
_RULE_KEYS = frozenset({"budget", "over", "match", "use", "raise"})
_POLICY_KEYS = frozenset({"collector_url", "refresh_seconds", "rules"})


class PolicyError(ValueError):
    """The budget policy is invalid; the message names the field (``rules[1].match.feature``)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule: ``attributes`` are (span attribute, allowed values) pairs, all of which must match."""

    budget: str
    over: float
    attributes: tuple[tuple[str, frozenset[str]], ...]
    providers: frozenset[str] | None
    models: frozenset[str] | None
    use: str | None  # None: raise BudgetExceeded

    def matches(self, provider: str, model: str, attrs: Mapping[str, Any]) -> bool:
        if self.models is not None and model not in self.models:
            return False
        if self.providers is not None and provider not in self.providers:
            return False
        return all(attrs.get(key) in values for key, values in self.attributes)


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]
    collector_url: str | None = None
    refresh_seconds: float = 30.0

    @property
    def budgets(self) -> frozenset[str]:
        return frozenset(r.budget for r in self.rules)


def _values(value: Any, where: str) -> frozenset[str]:
    items = value if isinstance(value, list | tuple) else [value]
    if not items or any(isinstance(v, bool) or not isinstance(v, str | int) or str(v) == "" for v in items):
        raise PolicyError(f"{where}: must be a non-empty string or a list of them, got {value!r}")
    return frozenset(str(v) for v in items)


def _over(value: Any, where: str) -> float:
    if value is None:
        return 1.0
    text = str(value).strip()
    try:
        ratio = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise PolicyError(f"{where}: must be a ratio (1.0) or a percentage ('100%'), got {value!r}") from None
    if isinstance(value, bool) or not 0 < ratio <= 10:
        raise PolicyError(f"{where}: must be above 0 and at most 10 (1000 %), got {value!r}")
    return ratio


def _rule(data: Any, where: str) -> Rule:
    if not isinstance(data, Mapping):
        raise PolicyError(f"{where}: must be a mapping with budget, over, match and use or raise")
    unknown = sorted(set(map(str, data)) - _RULE_KEYS)
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(sorted(_RULE_KEYS))})")
    budget = data.get("budget")
    if not isinstance(budget, str) or not budget:
        raise PolicyError(f"{where}.budget: must name a budget, got {budget!r}")
    use, raise_ = data.get("use"), data.get("raise")
    if (use is None) == (raise_ is None):
        raise PolicyError(f"{where}: give exactly one of use: <model> or raise: true")
    if use is not None and (not isinstance(use, str) or not use):
        raise PolicyError(f"{where}.use: must be a model name, got {use!r}")
    if raise_ is not None and raise_ is not True:
        raise PolicyError(f"{where}.raise: must be true, got {raise_!r}")
    match = data.get("match") or {}
    if not isinstance(match, Mapping):
        raise PolicyError(f"{where}.match: must be a mapping, got {type(match).__name__}")
    attributes: dict[str, frozenset[str]] = {}
    providers = models = None
    for key, value in match.items():
        key, path = str(key), f"{where}.match.{key}"
        if key in MATCH_ATTRIBUTES:
            attributes[MATCH_ATTRIBUTES[key]] = _values(value, path)
        elif key == "provider":
            providers = _values(value, path)
        elif key == "model":
            models = _values(value, path)
        elif key == "tags" and isinstance(value, Mapping) and value:
            for tag, tag_value in value.items():
                attributes[semconv.TAG_PREFIX + str(tag)] = _values(tag_value, f"{path}.{tag}")
        elif key.startswith("tag.") and len(key) > 4:
            attributes[semconv.TAG_PREFIX + key[4:]] = _values(value, path)
        else:
            allowed = ", ".join([*MATCH_ATTRIBUTES, "provider", "model", "tags", "tag.<name>"])
            raise PolicyError(f"{path}: unknown match key (allowed: {allowed})")
    return Rule(
        budget=budget,
        over=_over(data.get("over"), f"{where}.over"),
        attributes=tuple(sorted(attributes.items())),
        providers=providers,
        models=models,
        use=use,
    )


def parse(data: Any, where: str = "budget_policy") -> Policy:
    """Validate a policy mapping; errors name the field."""
    if not isinstance(data, Mapping):
        raise PolicyError(f"{where}: must be a mapping with rules: [...]")
    unknown = sorted(set(map(str, data)) - _POLICY_KEYS)
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(sorted(_POLICY_KEYS))})")
    rules = data.get("rules")
    if not isinstance(rules, list) or not rules:
        raise PolicyError(f"{where}.rules: must be a non-empty list of rules")
    url = data.get("collector_url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise PolicyError(f"{where}.collector_url: must be an http(s) URL, got {url!r}")
    refresh = data.get("refresh_seconds", 30)
    if isinstance(refresh, bool) or not isinstance(refresh, int | float) or not 0.1 <= refresh <= 3600:
        raise PolicyError(f"{where}.refresh_seconds: must be a number of seconds in 0.1..3600, got {refresh!r}")
    return Policy(
        rules=tuple(_rule(r, f"{where}.rules[{i}]") for i, r in enumerate(rules)),
        collector_url=url.rstrip("/") if url else None,
        refresh_seconds=float(refresh),
    )


def load(source: str | Path | Mapping[str, Any]) -> Policy:
    """A policy from a mapping, a ``.json`` file or a YAML file."""
    if isinstance(source, Mapping):
        return parse(source)
    path = Path(source)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{where}: cannot read the budget policy: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"{where}: not valid JSON: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise PolicyError(f"{where}: YAML policies need PyYAML (pip install pyyaml), or use a .json file") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{where}: not valid YAML: {exc}") from None
    return parse(data, where)
