"""LangChain run ``metadata`` and ``tags`` as llmmeter attribution.

``config={"metadata": {"feature": "search", "user_id": "u1"}, "tags": ["beta"]}`` attributes every span
of the run like ``llmmeter.attributes(feature="search", user_id="u1", tags={"beta": "true"})`` would:

* the attribution keys of ``llmmeter.attributes`` (``project``, ``feature``, ``user_id``, ``session_id``,
  ``environment``, ``experiment``, ``variant``) map to their attributes; LangSmith's thread keys
  ``thread_id`` / ``conversation_id`` map to ``session.id`` when no ``session_id`` is given;
* any other key with a scalar value (str, int, float, bool) becomes ``llmmeter.tag.<key>``; nested values
  and LangChain's own keys (``ls_*``, ``lc_*``, ``langgraph_*``, ``checkpoint_*``, dunder keys) are skipped;
* each tag becomes ``llmmeter.tag.<tag> = "true"``, except LangChain's structural tags (``seq:step:N``,
  ``map:key:K``, ``graph:step:N``, ``langsmith:*``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llmmeter import semconv

_SKIPPED_KEY_PREFIXES = ("ls_", "lc_", "langgraph_", "checkpoint_", "__")
_SKIPPED_TAG_PREFIXES = ("seq:step:", "map:key:", "graph:step:", "langsmith:")
_SESSION_ALIASES = ("thread_id", "conversation_id")
_MAX_VALUE_CHARS = 256


def attribution(metadata: Mapping[str, Any] | None, tags: Iterable[Any] | None) -> dict[str, str]:
    """Span attributes for a run's metadata and tags (see the module docstring for the rules)."""
    attrs: dict[str, str] = {}
    if tags:
        for tag in tags:
            if isinstance(tag, str) and tag and not tag.startswith(_SKIPPED_TAG_PREFIXES):
                attrs[semconv.TAG_PREFIX + tag] = "true"
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not key or key.startswith(_SKIPPED_KEY_PREFIXES):
                continue
            if not isinstance(value, str | int | float | bool) or value == "":
                continue
            text = str(value)[:_MAX_VALUE_CHARS]
            named = semconv.ATTRIBUTION_KEYS.get(key)
            if named is not None:
                attrs[named] = text
            elif key in _SESSION_ALIASES:
                attrs.setdefault(semconv.SESSION_ID, text)
            else:
                attrs[semconv.TAG_PREFIX + key] = text
    return attrs
