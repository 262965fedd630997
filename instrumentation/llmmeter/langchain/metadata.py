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

from llmmeter import options, semconv
from llmmeter.content import Prompt, template_fingerprint

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


def _templates(value: Any, out: list[str]) -> None:
    """Every template string of a serialized prompt template, with the message template classes around them."""
    if isinstance(value, Mapping):
        ident = value.get("id")
        if (
            isinstance(ident, list)
            and ident
            and isinstance(ident[-1], str)
            and ident[-1].endswith("MessagePromptTemplate")
        ):
            out.append(ident[-1])
        template = value.get("template")
        if isinstance(template, str):
            out.append(template)
        for key, item in value.items():
            if key != "template":
                _templates(item, out)
    elif isinstance(value, list):
        for item in value:
            _templates(item, out)


def prompt_template(
    serialized: Mapping[str, Any] | None, name: Any, metadata: Mapping[str, Any] | None
) -> dict[str, str]:
    """What a LangChain prompt template run tells about the prompt its model call will send: its name (a name given
    to the template, or a LangChain Hub repo), version (``prompt_version`` metadata, or the Hub commit) and the
    template's own text, fingerprinted (``llmmeter.prompt.template_fingerprint``)."""
    attrs: dict[str, str] = {}
    meta = metadata or {}
    ident = (serialized or {}).get("id")
    default = ident[-1] if isinstance(ident, list) and ident else None
    hub = meta.get("lc_hub_repo")
    if isinstance(meta.get("prompt"), str) and meta["prompt"]:
        attrs[semconv.PROMPT_NAME] = meta["prompt"][:_MAX_VALUE_CHARS]
    elif isinstance(name, str) and name and name != default:
        attrs[semconv.PROMPT_NAME] = name[:_MAX_VALUE_CHARS]
    elif isinstance(hub, str) and hub:
        owner = meta.get("lc_hub_owner")
        attrs[semconv.PROMPT_NAME] = (f"{owner}/{hub}" if isinstance(owner, str) and owner else hub)[:_MAX_VALUE_CHARS]
    version = meta.get("prompt_version") or meta.get("lc_hub_commit_hash")
    if isinstance(version, str | int) and str(version):
        attrs[semconv.PROMPT_VERSION] = str(version)[:_MAX_VALUE_CHARS]
    texts: list[str] = []
    _templates((serialized or {}).get("kwargs"), texts)
    if texts:
        key = options.current.fingerprint_key
        attrs[semconv.PROMPT_TEMPLATE_FINGERPRINT] = template_fingerprint(Prompt(template="\x1e".join(texts)), key)
    return attrs
