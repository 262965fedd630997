"""LiteLLM: llmmeter's budget policy applied in the LiteLLM Router, and LiteLLM's calls reported for pricing.

::

    import litellm, llmmeter
    from llmmeter.litellm import LLMMeterHook

    llmmeter.instrument(budget_policy="budget.yaml")   # export, and the policy the hook applies
    litellm.callbacks = [LLMMeterHook()]
    router = litellm.Router(model_list=[...])
    await router.acompletion(model="gpt-4o", messages=[...], user="u-42",
                             metadata={"llmmeter": {"feature": "search", "tags": {"team": "growth"}}})

The hook is a LiteLLM ``CustomLogger``:

* **Budget policy** (the SDK guard's rules, ``llmmeter.guard``): before a Router call is sent to the deployment it
  picked (``async_pre_call_deployment_hook``), the rules that the collector's budget state trips are matched against
  the deployment's provider and model and the call's attribution; a ``use:`` rule swaps the model on the same
  deployment (``use: gpt-4o-mini``) or names a LiteLLM model string (``use: openai/gpt-4o-mini``), a ``raise:`` rule
  refuses the call with ``llmmeter.litellm.BudgetExceeded`` (status 400, which the Router neither retries nor
  waits on; nothing reaches the provider). LiteLLM's synchronous path (``Router.completion``) calls no hook that can
  change the request: there ``pre_call_check`` refuses, a ``use:`` rule is logged once as not applied.
* **Usage**: every provider call LiteLLM makes becomes one llmmeter GenAI span with the provider, the model, the
  response id, input/output/cache/reasoning tokens and the attribution, so the collector prices it with its catalog
  (the cost LiteLLM computes is not used). Router calls report on the call path (``async_post_call_success_
  deployment_hook``, and each failed attempt from ``async_post_call_failure_deployment_hook``); streams at their end
  and calls outside the Router from LiteLLM's logging callbacks. A LiteLLM cache hit is no provider call and is not
  reported; a call the policy refused is not either. Another instrumentation of the same call (LiteLLM's own
  OpenTelemetry logger, OpenLLMetry) reports the same response id, and the collector keeps one row
  (ingest/identity.py).

Attribution of a call: the ``llmmeter.attributes`` block around it, then the request's
``metadata={"llmmeter": {...}}`` (keys ``project``, ``feature``, ``user_id``, ``session_id``, ``environment``,
``experiment``, ``variant``, ``prompt``, ``prompt_version``, ``tags``), then LiteLLM's ``user=`` as the user id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import litellm
from litellm.integrations.custom_logger import CustomLogger

from llmmeter import guard, semconv
from llmmeter.attribution import current_attributes
from llmmeter.guard import BudgetExceeded as GuardBudgetExceeded
from llmmeter.invocation import log_once
from llmmeter.manual import record

__all__ = ["BudgetExceeded", "LLMMeterHook", "provider_name"]

logger = logging.getLogger("llmmeter")

# LiteLLM's provider names -> the GenAI convention's gen_ai.provider.name (the collector's catalog keys)
_PROVIDERS = {
    "openai": semconv.PROVIDER_OPENAI,
    "text-completion-openai": semconv.PROVIDER_OPENAI,
    "azure": semconv.PROVIDER_AZURE_OPENAI,
    "azure_text": semconv.PROVIDER_AZURE_OPENAI,
    "anthropic": semconv.PROVIDER_ANTHROPIC,
    "gemini": semconv.PROVIDER_GEMINI,
    "vertex_ai": semconv.PROVIDER_VERTEX_AI,
    "vertex_ai_beta": semconv.PROVIDER_VERTEX_AI,
    "bedrock": semconv.PROVIDER_AWS_BEDROCK,
    "mistral": semconv.PROVIDER_MISTRAL_AI,
    "groq": semconv.PROVIDER_GROQ,
    "deepseek": semconv.PROVIDER_DEEPSEEK,
    "cohere": semconv.PROVIDER_COHERE,
    "cohere_chat": semconv.PROVIDER_COHERE,
    "xai": semconv.PROVIDER_X_AI,
    "perplexity": semconv.PROVIDER_PERPLEXITY,
    "watsonx": semconv.PROVIDER_IBM_WATSONX_AI,
}
# providers whose streams report usage only when asked (stream_options.include_usage)
_OPENAI_STREAMS = frozenset({"openai", "text-completion-openai", "azure", "azure_text"})
_OPERATIONS = {
    "completion": semconv.OP_CHAT,
    "acompletion": semconv.OP_CHAT,
    "text_completion": semconv.OP_TEXT_COMPLETION,
    "atext_completion": semconv.OP_TEXT_COMPLETION,
    "embedding": semconv.OP_EMBEDDINGS,
    "aembedding": semconv.OP_EMBEDDINGS,
}
METADATA_KEY = "llmmeter"  # the request's metadata entry with the call's attribution
# LiteLLM metadata entries the hook keeps for itself (the metadata dict travels with the call to its callbacks)
_STAMP = "llmmeter_attributes"  # the call's attribution, for callbacks that run in another thread or task
_STARTED = "llmmeter_started"  # when the current deployment attempt started (epoch seconds)
_REPORTED = "llmmeter_reported"  # the response id the deployment hook reported on the call path
_FAILURES_REPORTED = "llmmeter_failures_reported"  # the deployment hook reported the failed attempts


class BudgetExceeded(GuardBudgetExceeded):
    """A LiteLLM call the budget policy refused; ``status_code`` 400 as LiteLLM's own budget errors, so the Router
    neither retries it nor backs off."""

    status_code = 400


def provider_name(litellm_provider: str) -> str:
    """The GenAI provider name of a LiteLLM provider (``azure`` -> ``azure.ai.openai``); others unchanged."""
    return _PROVIDERS.get(litellm_provider, litellm_provider)


def _split(model: str, litellm_provider: str | None = None) -> tuple[str, str]:
    """(LiteLLM provider, model without the provider prefix) of a LiteLLM model string."""
    name, provider, _, _ = litellm.get_llm_provider(model=model, custom_llm_provider=litellm_provider)
    return str(provider), str(name)


def _metadata(kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    for key in ("metadata", "litellm_metadata"):
        value = kwargs.get(key)
        if isinstance(value, dict):
            return value
    params = kwargs.get("litellm_params")
    if isinstance(params, Mapping) and isinstance(params.get("metadata"), dict):
        return params["metadata"]
    return None


def attribution(kwargs: Mapping[str, Any], ambient: Mapping[str, str] | None = None) -> dict[str, str]:
    """The call's attribution as span attributes: the ambient ``llmmeter.attributes``, the request's
    ``metadata["llmmeter"]``, LiteLLM's ``user``. An unknown key raises ``ValueError`` naming it."""
    attrs = dict(current_attributes() if ambient is None else ambient)
    given = (_metadata(kwargs) or {}).get(METADATA_KEY) or {}
    if not isinstance(given, Mapping):
        raise ValueError(f"metadata[{METADATA_KEY!r}] must be a mapping, got {type(given).__name__}")
    for key, value in given.items():
        if key == "tags":
            if not isinstance(value, Mapping):
                raise ValueError(f"metadata[{METADATA_KEY!r}]['tags'] must be a mapping of tag name to value")
            attrs.update({semconv.TAG_PREFIX + str(k): str(v) for k, v in value.items()})
        elif key in semconv.ATTRIBUTION_KEYS:
            if value is not None:
                attrs[semconv.ATTRIBUTION_KEYS[key]] = str(value)
        else:
            known = ", ".join([*semconv.ATTRIBUTION_KEYS, "tags"])
            raise ValueError(f"metadata[{METADATA_KEY!r}] has an unknown key {key!r} (known: {known})")
    user = kwargs.get("user")
    if isinstance(user, str) and user and semconv.USER_ID not in attrs:
        attrs[semconv.USER_ID] = user
    return attrs


_warned: set[str] = set()


def _attribution(kwargs: Mapping[str, Any], ambient: Mapping[str, str] | None = None) -> dict[str, str]:
    """``attribution``; bad metadata is logged (once per problem) and left out, the call goes on."""
    try:
        return attribution(kwargs, ambient)
    except ValueError as exc:
        if str(exc) not in _warned:
            _warned.add(str(exc))
            logger.warning("llmmeter: LiteLLM call attribution left out: %s", exc)
        return dict(current_attributes() if ambient is None else ambient)


def _refuse(exc: GuardBudgetExceeded) -> BudgetExceeded:
    return BudgetExceeded(str(exc), budget=exc.budget, utilization=exc.utilization, model=exc.model)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _usage(response: Any) -> dict[str, int | None]:
    """Token counts by ``llmmeter.record``'s names from a LiteLLM response's OpenAI-style usage (prompt tokens
    include cache reads and writes, completion tokens include reasoning, as LiteLLM reports them)."""
    usage = getattr(response, "usage", None)
    if usage is None:
        return {}
    prompt = getattr(usage, "prompt_tokens_details", None)
    completion = getattr(usage, "completion_tokens_details", None)
    cache_write = _int(getattr(prompt, "cache_creation_tokens", None)) or _int(
        getattr(prompt, "cache_write_tokens", None)
    )
    return {
        "input_tokens": _int(getattr(usage, "prompt_tokens", None)),
        "output_tokens": _int(getattr(usage, "completion_tokens", None)),
        "cache_read_tokens": _int(getattr(prompt, "cached_tokens", None)),
        "cache_creation_tokens": cache_write,
        "reasoning_tokens": _int(getattr(completion, "reasoning_tokens", None)),
    }


class LLMMeterHook(CustomLogger):
    """Apply llmmeter's budget policy to LiteLLM Router calls and report every LiteLLM call's usage.

    ``budget_policy`` loads a policy here (as ``llmmeter.instrument(budget_policy=...)`` does); by default the
    hook applies the policy the SDK guard loaded, if any. ``report_usage=False`` keeps only the budget part.
    """

    def __init__(self, *, budget_policy: guard.PolicySource | None = None, report_usage: bool = True) -> None:
        super().__init__()
        guard.configure(budget_policy)
        self.report_usage = report_usage
        self._warned_sync_swap: set[str] = set()

    # -- budget policy ---------------------------------------------------------------------------------------

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any] | None:
        try:
            provider, model = _split(str(kwargs.get("model") or ""), kwargs.get("custom_llm_provider"))
            attrs = _attribution(kwargs)
        except Exception as exc:
            log_once("litellm.pre_call", exc)
            return None
        metadata = _metadata(kwargs)
        if metadata is not None:
            metadata[_STAMP] = attrs
            metadata[_STARTED] = time.time()
        try:
            chosen = guard.check(provider_name(provider), model, attrs)
        except GuardBudgetExceeded as exc:
            raise _refuse(exc) from None
        changed = dict(kwargs)
        if chosen != model:
            changed["model"] = chosen if "/" in chosen else f"{provider}/{chosen}"
            attrs[semconv.REQUESTED_MODEL] = model
        if kwargs.get("stream") and provider in _OPENAI_STREAMS and not kwargs.get("stream_options"):
            changed["stream_options"] = {"include_usage": True}  # the provider's usage, not LiteLLM's own count
        return changed if changed != kwargs else None

    def pre_call_check(self, deployment: dict[str, Any]) -> dict[str, Any] | None:
        try:
            params = deployment.get("litellm_params") or {}
            provider, model = _split(str(params.get("model") or ""), params.get("custom_llm_provider"))
        except Exception as exc:
            log_once("litellm.pre_call_check", exc)
            return deployment
        try:
            chosen = guard.check(provider_name(provider), model)
        except GuardBudgetExceeded as exc:
            raise _refuse(exc) from None
        if chosen != model and model not in self._warned_sync_swap:
            self._warned_sync_swap.add(model)
            logger.warning(
                "llmmeter: the budget policy swaps %r for %r, but LiteLLM's synchronous Router path cannot change"
                " a request's model; the call runs on %r (use the async Router methods for model swaps)",
                model,
                chosen,
                model,
            )
        return deployment

    # -- usage ------------------------------------------------------------------------------------------------
    # A Router call reports on its own path (the deployment hooks are awaited there), so the last call of an
    # ``asyncio.run(...)`` is not lost with LiteLLM's logging tasks when the loop closes; a stream, whose usage
    # is known only at its end, and calls outside the Router report from the logging callbacks.

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        """Keep the caller's attribution for the logging callbacks, which may run in another thread (the sync
        path; the async Router path stamped it in ``async_pre_call_deployment_hook``)."""
        if self.report_usage and _STAMP not in (_metadata(kwargs) or {}):
            kwargs[_STAMP] = _attribution(kwargs)

    async def async_post_call_success_deployment_hook(
        self, request_data: dict[str, Any], response: Any, call_type: Any
    ) -> Any:
        if request_data.get("stream") or not self.report_usage:
            return None  # reported at the stream's end by the success callback
        metadata = _metadata(request_data)
        started = (metadata or {}).get(_STARTED)
        if self._report(request_data, call_type, response, started, time.time(), None) and metadata is not None:
            metadata[_REPORTED] = getattr(response, "id", None) or True
        return None

    async def async_post_call_failure_deployment_hook(
        self, request_data: Any, exception: Exception, call_type: Any, fallback_depth: int | None = None
    ) -> None:
        if not self.report_usage or not isinstance(request_data, Mapping):
            return
        metadata = _metadata(request_data)
        started = (metadata or {}).get(_STARTED)
        if self._report(request_data, call_type, None, started, time.time(), exception) and metadata is not None:
            metadata[_FAILURES_REPORTED] = True  # each attempt was reported; the request-level callback is not

    def log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._logged(kwargs, response_obj, start_time, end_time, None)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._logged(kwargs, response_obj, start_time, end_time, None)

    def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._logged(kwargs, None, start_time, end_time, kwargs.get("exception"))

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._logged(kwargs, None, start_time, end_time, kwargs.get("exception"))

    def _logged(self, kwargs: dict[str, Any], response: Any, start: Any, end: Any, error: Any) -> None:
        """A LiteLLM logging callback: report what the deployment hooks did not."""
        if not self.report_usage or kwargs.get("cache_hit"):
            return  # a LiteLLM cache hit made no provider call
        metadata = _metadata(kwargs) or {}
        if error is None and _REPORTED in metadata and metadata[_REPORTED] in (getattr(response, "id", None), True):
            return
        if error is not None and metadata.get(_FAILURES_REPORTED):
            return
        self._report(kwargs, kwargs.get("call_type"), response, start, end, error)

    def _report(
        self, kwargs: Mapping[str, Any], call_type: Any, response: Any, start: Any, end: Any, error: Any
    ) -> bool:
        """Record one provider call as a GenAI span; False when it is no priced provider call (or on our error)."""
        if isinstance(error, GuardBudgetExceeded):
            return False  # refused before the provider was called
        try:
            operation = _OPERATIONS.get(str(getattr(call_type, "value", call_type)))
            if operation is None:
                return False  # images, audio, rerank...: not priced per token
            provider, model = _split(str(kwargs.get("model") or ""), kwargs.get("custom_llm_provider"))
            attrs = (_metadata(kwargs) or {}).get(_STAMP) or kwargs.get(_STAMP)
            if not isinstance(attrs, dict):
                attrs = _attribution(kwargs, ambient={})
            usage = _usage(response) if error is None else {}
            record(
                provider=provider_name(provider),
                model=model,
                operation=operation,
                response_model=getattr(response, "model", None) or None,
                response_id=getattr(response, "id", None) or None,
                start_time=start if isinstance(start, datetime | float) else None,
                end_time=end if isinstance(end, datetime | float) else None,
                error=error if isinstance(error, BaseException) else ("error" if error is not None else None),
                attributes=attrs,
                input_tokens=usage.get("input_tokens"),
                output_tokens=usage.get("output_tokens"),
                cache_read_tokens=usage.get("cache_read_tokens"),
                cache_creation_tokens=usage.get("cache_creation_tokens"),
                reasoning_tokens=usage.get("reasoning_tokens"),
            )
        except Exception as exc:
            log_once("litellm.report", exc)
            return False
        return True
