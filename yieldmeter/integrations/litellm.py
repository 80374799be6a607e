"""LiteLLM integration: every call as a UsageEvent, and spend controls before each call.

SDK::

    import litellm
    from yieldmeter.integrations.litellm import YieldmeterLogger

    ym = YieldmeterLogger(org_id="acme", app="support-bot")   # Kafka and topics from YIELDMETER_*
    litellm.callbacks = [ym]                                   # every call, success or failure, is sent
    response = await ym.acompletion(model="gpt-4o", messages=messages,       # check, then litellm.acompletion
                                    metadata={"team": "support", "user_id": "u42"})

    ym.check(team="support", user_id="u42")   # or check yourself; raises BudgetRefused (status_code 429)

Proxy (config.yaml)::

    litellm_settings:
      callbacks: yieldmeter.integrations.litellm.proxy_handler

The proxy's ``async_pre_call_hook`` refuses a call of a blocked or throttled scope with HTTP 429
(and Retry-After); the logger sends every call. LiteLLM's SDK has no hook that may refuse a call
(exceptions in its logging hooks are swallowed), hence ``check`` and the ``completion`` /
``acompletion`` wrappers there.

Who a call belongs to, for the event and for the check alike (:meth:`YieldmeterLogger.scope`):
the org and team of the LiteLLM key win, because the proxy authenticated it, over the request's
``metadata`` (``org_id``, ``team``, ``user_id``, ``app``, ``feature``, ``session_id``); the user
is the end user (the request's ``user``, or ``metadata.user_id``), else the key's owner; the
key's alias (or hash, never the key) is ``api_key``; the defaults (:class:`LiteLLMSettings`)
fill the rest. Token counts follow OpenTelemetry: ``input_tokens`` include cached
ones (LiteLLM's ``prompt_tokens``), ``output_tokens`` include reasoning. A call served from
LiteLLM's own response cache never reached a provider: it is sent with zero tokens and the
attribute ``litellm_cache_hit``. An event LiteLLM's data cannot make valid goes to the
dead-letter topic with the reason, never dropped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Mapping

from litellm.integrations.custom_logger import CustomLogger
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from yieldmeter.budgets import API_KEY_ATTRIBUTE
from yieldmeter.config import ENV_PREFIX, Settings, load_settings
from yieldmeter.contracts import UsageEvent, explain
from yieldmeter.controls import ControlsCache, ControlsSettings, Decision
from yieldmeter.sdk import UsageProducer

log = logging.getLogger(__name__)

OPERATIONS = {"completion": "chat", "embedding": "embeddings", "text_completion": "text_completion",
              "image_generation": "image_generation", "transcription": "transcription", "speech": "speech",
              "responses": "responses", "anthropic_messages": "chat", "rerank": "rerank"}
"""LiteLLM call types (async ones drop their leading 'a') -> UsageEvent.operation."""


class LiteLLMSettings(BaseSettings):
    """Defaults for what LiteLLM does not say. Environment: ``YIELDMETER_LITELLM_`` + the field name."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}LITELLM_", env_file=".env", extra="ignore", frozen=True)

    org_id: str = Field("default", description="Organisation of calls whose key and metadata name none.")
    app: str = Field("litellm", description="App of calls whose metadata names none.")
    team: str = Field("default", description="Team of calls whose key and metadata name none.")
    user_id: str = Field("anonymous", description="User of calls whose key, metadata and `user` name none.")
    check: bool = Field(True, description="Apply the spend controls before calls (proxy hook and the SDK wrappers).")


class BudgetRefused(Exception):
    """A call refused by the spend controls (HTTP 429 in the proxy); carries the decision."""

    status_code = 429

    def __init__(self, decision: Decision):
        self.decision = decision
        self.retry_after_s = decision.retry_after_s
        super().__init__(f"yieldmeter: {decision.reason}")


@dataclass(frozen=True)
class Scope:
    """Who a call belongs to (the budget scope fields, and the event's context)."""

    org_id: str
    team: str
    user_id: str
    app: str
    api_key: str | None = None
    feature: str | None = None
    session_id: str | None = None


def _first(*values: Any) -> str | None:
    return next((str(v) for v in values if v not in (None, "")), None)


class YieldmeterLogger(CustomLogger):
    """LiteLLM callback: sends every call to usage.events and checks the spend controls.

    ``settings`` (Kafka, topics), ``litellm_settings`` and ``controls_settings`` default to the
    environment; keyword arguments override single LiteLLM defaults (org_id, app, team, user_id).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        litellm_settings: LiteLLMSettings | None = None,
        controls_settings: ControlsSettings | None = None,
        **defaults: str,
    ):
        super().__init__()
        self.settings = settings or load_settings()
        base = litellm_settings or LiteLLMSettings()
        self.defaults = base.model_copy(update=defaults) if defaults else base
        self.producer = UsageProducer(self.settings, config={"linger.ms": 5})  # a gateway sends promptly
        self.controls: ControlsCache | None = None
        if self.defaults.check:
            self.controls = ControlsCache(self.settings, controls_settings)
            self.controls.wait_ready()

    # --- who a call belongs to -----------------------------------------------------------------

    def scope(self, metadata: Mapping[str, Any] | None = None, key: Mapping[str, Any] | None = None,
              user: str | None = None) -> Scope:
        """The call's scope from the key's fields (``user_api_key_*`` as LiteLLM logs them), the
        request's metadata and ``user``, then the defaults (see the module docstring)."""
        meta, key = metadata or {}, key or {}
        d = self.defaults
        return Scope(
            org_id=_first(key.get("user_api_key_org_id"), meta.get("org_id"), d.org_id),
            team=_first(key.get("user_api_key_team_alias"), key.get("user_api_key_team_id"), meta.get("team"), d.team),
            user_id=_first(key.get("user_api_key_end_user_id"), user, meta.get("user_id"),
                           key.get("user_api_key_user_id"), d.user_id),
            app=_first(meta.get("app"), d.app),
            api_key=_first(key.get("user_api_key_alias"), key.get("user_api_key_hash")),
            feature=_first(meta.get("feature")),
            session_id=_first(meta.get("session_id"), meta.get("litellm_session_id")),
        )

    # --- the pre-call check --------------------------------------------------------------------

    def decide(self, scope: Scope) -> Decision | None:
        if self.controls is None:
            return None
        return self.controls.decide(scope.org_id, scope.team, scope.user_id, scope.app, scope.api_key)

    def check(self, metadata: Mapping[str, Any] | None = None, user: str | None = None, **fields: str) -> Decision | None:
        """Raise :class:`BudgetRefused` if a call with this metadata (or these scope fields:
        team=, user_id=, app=, org_id=, api_key=) may not go ahead now."""
        scope = self.scope({**(metadata or {}), **{k: v for k, v in fields.items() if k != "api_key"}},
                           {"user_api_key_alias": fields.get("api_key")}, user)
        decision = self.decide(scope)
        if decision is not None and not decision.allowed:
            raise BudgetRefused(decision)
        return decision

    def completion(self, **kwargs: Any) -> Any:
        """``litellm.completion`` after the check (same arguments)."""
        import litellm

        self.check(kwargs.get("metadata"), kwargs.get("user"))
        return litellm.completion(**kwargs)

    async def acompletion(self, **kwargs: Any) -> Any:
        """``litellm.acompletion`` after the check (same arguments)."""
        import litellm

        self.check(kwargs.get("metadata"), kwargs.get("user"))
        return await litellm.acompletion(**kwargs)

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> dict:
        """Proxy only: refuse a call of a blocked or throttled scope with HTTP 429."""
        key = {
            "user_api_key_org_id": getattr(user_api_key_dict, "org_id", None),
            "user_api_key_team_alias": getattr(user_api_key_dict, "team_alias", None),
            "user_api_key_team_id": getattr(user_api_key_dict, "team_id", None),
            "user_api_key_end_user_id": getattr(user_api_key_dict, "end_user_id", None),
            "user_api_key_user_id": getattr(user_api_key_dict, "user_id", None),
            "user_api_key_alias": getattr(user_api_key_dict, "key_alias", None),
            "user_api_key_hash": getattr(user_api_key_dict, "api_key", None),  # the proxy keeps the hash here
        }
        metadata = data.get("metadata") or {}
        scope = self.scope(metadata.get("requester_metadata") or metadata, key, data.get("user"))
        decision = self.decide(scope)
        if decision is not None and not decision.allowed:
            from fastapi import HTTPException

            headers = {"Retry-After": str(decision.retry_after_s)} if decision.retry_after_s else None
            raise HTTPException(status_code=429, headers=headers, detail={
                "error": f"yieldmeter: {decision.reason}", "state": decision.state,
                "budget_id": decision.control.budget_id if decision.control else None,
            })
        return data

    # --- the logger ------------------------------------------------------------------------------

    def log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._record(kwargs, response_obj, ok=True)

    def log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._record(kwargs, response_obj, ok=False)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._record(kwargs, response_obj, ok=True)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._record(kwargs, response_obj, ok=False)

    def _record(self, kwargs: dict, response: Any, ok: bool) -> None:
        # Never raises into LiteLLM: a logging problem must not fail the user's call.
        try:
            record = self.event_fields(kwargs, response, ok)
        except Exception:  # LiteLLM's data in a shape we did not expect: say so, keep the payload
            log.exception("yieldmeter: could not read LiteLLM's call data")
            return
        try:
            self.producer.send_usage(UsageEvent.model_validate(record))
        except ValidationError as error:
            self._dead_letter(record, explain(error))
        except Exception as error:  # e.g. DeliveryError: the producer failed for good
            log.warning("yieldmeter: could not send a usage event: %s", error)

    def _dead_letter(self, record: dict, reason: str) -> None:
        log.warning("yieldmeter: a LiteLLM call made an invalid usage event (%s); sent to %s",
                    reason.replace("\n", "; "), self.settings.topic_dlq)
        self.producer.send_dead_letter(json.dumps(record, default=str), reason, source_topic="litellm")

    def event_fields(self, kwargs: dict, response: Any, ok: bool) -> dict[str, Any]:
        """The UsageEvent of one LiteLLM call, as a dict (validated by the caller)."""
        slo = kwargs.get("standard_logging_object") or {}
        key_meta = slo.get("metadata") or {}
        params = kwargs.get("litellm_params") or {}
        request_meta = key_meta.get("requester_metadata") or params.get("metadata") or {}
        scope = self.scope(request_meta, key_meta, _first(kwargs.get("user"), slo.get("end_user")))
        start = slo.get("startTime") or datetime.now(UTC).timestamp()
        end = slo.get("endTime") or start
        call_type = str(slo.get("call_type") or kwargs.get("call_type") or "completion")
        base_type = call_type[1:] if call_type.startswith("a") and call_type[1:] in OPERATIONS else call_type
        cache_hit = bool(slo.get("cache_hit"))
        usage = _usage(response, key_meta.get("usage_object")) if ok and not cache_hit else {}
        error = (slo.get("error_information") or {}) if not ok else {}
        exception = kwargs.get("exception")
        provider = _first(slo.get("custom_llm_provider"), "unknown")
        model = _first(slo.get("model"), kwargs.get("model"), "unknown")
        attributes = {
            API_KEY_ATTRIBUTE: scope.api_key,
            "litellm_call_type": call_type,
            "litellm_model_group": slo.get("model_group") or None,
            "litellm_cache_hit": "true" if cache_hit else None,
            "litellm_stream": "true" if slo.get("stream") else None,
        }
        return {
            # LiteLLM's id of this call: a response id repeats on a cache hit
            "event_id": _first(kwargs.get("litellm_call_id"), slo.get("id")),
            "occurred_at": datetime.fromtimestamp(start, UTC),
            "org_id": scope.org_id, "team": scope.team, "user_id": scope.user_id, "app": scope.app,
            "feature": scope.feature, "session_id": scope.session_id, "trace_id": _first(slo.get("trace_id")),
            "provider": provider,
            "request_model": model.removeprefix(f"{provider}/"),  # a cache hit logs "openai/gpt-4o"
            "response_model": _first(getattr(response, "model", None)) if ok else None,
            "operation": OPERATIONS.get(base_type, base_type),
            "latency_ms": max(0, round((end - start) * 1000)),
            "status": "cancelled" if type(exception).__name__ == "CancelledError" else ("ok" if ok else "error"),
            "error_type": _first(error.get("error_class"), type(exception).__name__ if exception else None),
            "input_tokens": usage.get("input", 0), "cache_read_tokens": usage.get("cache_read", 0),
            "cache_write_tokens": usage.get("cache_write", 0), "output_tokens": usage.get("output", 0),
            "reasoning_tokens": usage.get("reasoning", 0),
            "attributes": {k: v for k, v in attributes.items() if v is not None},
        }

    def close(self) -> None:
        """Send what is queued and stop the controls consumer."""
        if self.controls is not None:
            self.controls.close()
        self.producer.close(10)


def _usage(response: Any, logged: Mapping[str, Any] | None) -> dict[str, int]:
    """Token counts from LiteLLM's OpenAI-shaped usage (the response's, else the logged copy)."""
    usage = getattr(response, "usage", None)
    data = usage.model_dump() if hasattr(usage, "model_dump") else dict(logged or {})
    prompt = data.get("prompt_tokens_details") or {}
    completion = data.get("completion_tokens_details") or {}
    return {
        "input": int(data.get("prompt_tokens") or 0),
        "output": int(data.get("completion_tokens") or 0),
        "cache_read": int(prompt.get("cached_tokens") or 0),
        # Anthropic's cache writes: LiteLLM keeps them beside the usage, or in the details
        "cache_write": int(data.get("cache_creation_input_tokens") or prompt.get("cache_creation_tokens") or 0),
        "reasoning": int(completion.get("reasoning_tokens") or 0),
    }


def __getattr__(name: str) -> Any:
    """``proxy_handler``: the instance LiteLLM proxy's ``callbacks`` setting names, built from the
    environment on first use (importing this module starts nothing)."""
    if name == "proxy_handler":
        global proxy_handler
        proxy_handler = YieldmeterLogger()
        return proxy_handler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

