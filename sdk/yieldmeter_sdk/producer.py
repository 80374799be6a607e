"""Producer SDK: send usage events and outcomes to Kafka from any Python program.

    from yieldmeter_sdk import UsageProducer     # in the application also: from yieldmeter.sdk import ...

    with UsageProducer() as producer:                      # settings from YIELDMETER_* variables
        response = openai_client.chat.completions.create(...)
        producer.record_openai(response, org_id="acme", team="support", user_id="u-42", app="helpdesk",
                               session_id=ticket.id, latency_ms=elapsed_ms)
        producer.record_outcome("ticket_resolved", True, org_id="acme", team="support", user_id="u-42",
                                app="helpdesk", session_id=ticket.id)
    # leaving the block flushes; a message the broker did not take raises DeliveryError

Delivery: confluent-kafka's idempotent producer (acks=all, no duplicates or reordering on
retry), lz4-compressed batches. Every message is keyed by its session key (:func:`session_key`)
so one session's events stay in order on one partition; the partitioner is murmur2, the Java
client's, so a key lands on the same partition whether Python or Flink wrote it.

The event builders (:func:`usage_event`, :func:`event_from_openai`, :func:`event_from_anthropic`,
:func:`event_from_gemini`, :func:`outcome_event`) are pure: they read usage and model from a
response through yieldmeter_sdk.normalize's adapters and return a validated event; the
``record_*`` methods build and send.

Failures: `send_*` returns once librdkafka has queued the message; the broker's answer comes
later. Only failed deliveries call back (delivery.report.only.error), each is kept with its
key and value (nothing is lost) and passed to ``on_error``; :meth:`UsageProducer.flush` and
:meth:`UsageProducer.close` raise :class:`DeliveryError` listing how many failed and why.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Optional

from confluent_kafka import KafkaError, KafkaException, Producer
from pydantic import ValidationError

from yieldmeter_sdk.contracts import UTC, ContractError, OutcomeEvent, UsageEvent
from yieldmeter_sdk.errors import YieldmeterError
from yieldmeter_sdk.normalize import (
    TokenUsage,
    as_dict,
    from_anthropic,
    from_anthropic_stream,
    from_gemini,
    from_openai_chat,
    from_openai_responses,
    from_openai_stream,
)

log = logging.getLogger(__name__)


class _TransientRetries(logging.Filter):
    """librdkafka logs a WARNING while a fresh broker loads its coordinators ("GETPID ... Coordinator
    load in progress: retrying"); the client retries by itself and nothing is lost, so the line
    is demoted to DEBUG instead of reaching a user's console (the demo printed it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.WARNING and "load in progress" in message and "retrying" in message:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return log.isEnabledFor(logging.DEBUG)
        return True


log.addFilter(_TransientRetries())

DEFAULT_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,  # implies acks=all and in-order retries
    "compression.type": "lz4",  # cheapest CPU per byte saved; JSON events shrink ~4x
    "linger.ms": 20,  # wait up to 20 ms to fill a batch: throughput over latency
    "batch.size": 1_000_000,
    "partitioner": "murmur2_random",  # same key -> same partition as the Java client (Flink)
    "delivery.report.only.error": True,  # no Python callback per delivered message
}
POLL_EVERY = 1000
"""Serve delivery callbacks every this many messages (poll(0) per message costs throughput)."""

_USAGE_JSON = UsageEvent.__pydantic_serializer__.to_json
_OUTCOME_JSON = OutcomeEvent.__pydantic_serializer__.to_json


class DeliveryError(YieldmeterError):
    """Messages the broker did not take; ``failures`` holds each one with its key, value and reason."""

    def __init__(self, failures: list[FailedDelivery], sent: int | None = None):
        self.failures = failures
        reasons = Counter(f"{f.reason} (topic {f.topic})" for f in failures)
        listed = "; ".join(f"{count}x {reason}" for reason, count in reasons.most_common(5))
        more = f"; and {len(reasons) - 5} other reasons" if len(reasons) > 5 else ""
        of = f" of {sent}" if sent is not None else ""
        super().__init__(f"{len(failures)}{of} messages were not delivered: {listed}{more}")


@dataclass(frozen=True)
class FailedDelivery:
    topic: str
    key: Optional[bytes]
    value: Optional[bytes]
    reason: str
    retriable: bool = False


def session_key(org_id: str, user_id: str, app: str, session_id: str | None) -> str:
    """Kafka key of an event: its session. Without a session id the Flink sessionizer groups by
    (org, user, app), so that triple is the key; either way one session stays on one partition."""
    return f"{org_id}/{session_id}" if session_id else f"{org_id}/{user_id}/{app}"


def new_id() -> str:
    """A UUIDv7 (RFC 9562): unique, and time-ordered so ids sort by creation time in the warehouse."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | 7 << 76 | (rand >> 62 & 0xFFF) << 64 | 2 << 62 | (rand & (2**62 - 1))
    return str(uuid.UUID(int=value))


def _wire_time(value: datetime) -> str:  # as contracts writes timestamps: UTC, ms, Z
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dead_letter(
    payload: bytes | str,
    reason: str,
    *,
    source_topic: str,
    source_partition: int = -1,
    source_offset: int = -1,
    **extra: Any,
) -> dict[str, Any]:
    """A dead-letter record as the warehouse stores it (infra/clickhouse/migrations/0001_dead_letters).

    Input that never reached Kafka has partition -1; its offset is then a position in the source
    (a line number), so (source_topic, source_partition, source_offset) still names one record.
    """
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", "backslashreplace")  # keep undecodable bytes visible
    return {
        "source_topic": source_topic,
        "source_partition": source_partition,
        "source_offset": source_offset,
        "rejected_at": _wire_time(datetime.now(UTC)),
        "reason": reason,
        "payload": payload,
        **extra,
    }


ENV_PREFIX = "YIELDMETER_"
KAFKA_PORT = 9092
"""Client port of the local broker that `yieldmeter up` starts."""
TOPIC_EVENTS, TOPIC_OUTCOMES, TOPIC_DLQ = "usage.events", "usage.outcomes", "usage.dlq"


@dataclass(frozen=True)
class ProducerSettings:
    """Where the producer sends: the application's settings of the same names (yieldmeter.config
    takes its defaults from here), without pydantic-settings."""

    bootstrap_servers: str = f"127.0.0.1:{KAFKA_PORT}"
    topic_events: str = TOPIC_EVENTS
    topic_outcomes: str = TOPIC_OUTCOMES
    topic_dlq: str = TOPIC_DLQ

    @classmethod
    def from_env(cls, bootstrap_servers: str | None = None) -> ProducerSettings:
        """From the environment, as the application reads it (its ``.env`` file excepted):
        YIELDMETER_KAFKA_BOOTSTRAP, else 127.0.0.1:YIELDMETER_KAFKA_PORT; YIELDMETER_TOPIC_EVENTS,
        YIELDMETER_TOPIC_OUTCOMES, YIELDMETER_TOPIC_DLQ."""
        env = os.environ
        port = env.get(f"{ENV_PREFIX}KAFKA_PORT", "").strip() or str(KAFKA_PORT)
        if not port.isdigit():
            raise YieldmeterError(f"{ENV_PREFIX}KAFKA_PORT={port}: give a port number, e.g. {KAFKA_PORT}")
        return cls(
            bootstrap_servers=bootstrap_servers or env.get(f"{ENV_PREFIX}KAFKA_BOOTSTRAP", "").strip()
            or f"127.0.0.1:{port}",
            topic_events=env.get(f"{ENV_PREFIX}TOPIC_EVENTS") or TOPIC_EVENTS,
            topic_outcomes=env.get(f"{ENV_PREFIX}TOPIC_OUTCOMES") or TOPIC_OUTCOMES,
            topic_dlq=env.get(f"{ENV_PREFIX}TOPIC_DLQ") or TOPIC_DLQ,
        )


class UsageProducer:
    """Validates, keys and sends UsageEvent and OutcomeEvent records (see the module docstring).

    ``settings``: a bootstrap-servers string; a :class:`ProducerSettings` or anything with its
    attributes (the application's ``yieldmeter.config.Settings``); or None for the YIELDMETER_*
    environment variables (:meth:`ProducerSettings.from_env`).
    ``config``: librdkafka properties that override :data:`DEFAULT_CONFIG`.
    ``on_error``: called with each :class:`FailedDelivery` as it is reported (inside poll/flush).
    """

    def __init__(
        self,
        settings: ProducerSettings | str | None = None,
        *,
        events_topic: str | None = None,
        outcomes_topic: str | None = None,
        dlq_topic: str | None = None,
        config: Mapping[str, Any] | None = None,
        on_error: Callable[[FailedDelivery], None] | None = None,
    ):
        if settings is None or isinstance(settings, str):
            settings = ProducerSettings.from_env(bootstrap_servers=settings)
        self.settings = settings
        self.events_topic = events_topic or settings.topic_events
        self.outcomes_topic = outcomes_topic or settings.topic_outcomes
        self.dlq_topic = dlq_topic or settings.topic_dlq
        self.on_error = on_error
        self.failures: list[FailedDelivery] = []
        self.sent = 0
        self._fatal: KafkaError | None = None
        self._closed = False
        self._producer = Producer({
            "bootstrap.servers": settings.bootstrap_servers,
            **DEFAULT_CONFIG,
            **(config or {}),
            "on_delivery": self._on_delivery,
            "error_cb": self._on_client_error,
            "logger": log,
        })

    # --- sending -----------------------------------------------------------------------------

    def send_usage(self, event: UsageEvent | Mapping[str, Any] | bytes | str) -> UsageEvent:
        """Validate (unless already a UsageEvent) and send one call; returns the event.

        A dict or JSON that breaks the contract raises ContractError naming each field and rule.
        """
        if type(event) is not UsageEvent:
            event = _validate(UsageEvent, event)
        key = session_key(event.org_id, event.user_id, event.app, event.session_id)
        self._produce(self.events_topic, _USAGE_JSON(event), key)
        return event

    def send_outcome(self, event: OutcomeEvent | Mapping[str, Any] | bytes | str) -> OutcomeEvent:
        """Validate (unless already an OutcomeEvent) and send one outcome; returns the event."""
        if type(event) is not OutcomeEvent:
            event = _validate(OutcomeEvent, event)
        key = session_key(event.org_id, event.user_id, event.app, event.session_id)
        self._produce(self.outcomes_topic, _OUTCOME_JSON(event), key)
        return event

    def send_raw(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        """Send bytes as they are: already-serialised records, dead letters. No validation."""
        self._produce(topic, value, key)

    def send_dead_letter(self, payload: bytes | str, reason: str, *, source_topic: str, **fields: Any) -> None:
        """Send a :func:`dead_letter` record to the dead-letter topic, keyed by its source."""
        record = dead_letter(payload, reason, source_topic=source_topic, **fields)
        self._produce(self.dlq_topic, json.dumps(record, ensure_ascii=False).encode(), source_topic)

    def _produce(self, topic: str, value: bytes, key: str | bytes | None) -> None:
        if self._fatal is not None:
            raise DeliveryError([FailedDelivery(topic, _bytes(key), value, f"producer failed: {self._fatal.str()}")])
        try:
            self._producer.produce(topic, value, key)
        except BufferError:  # the local queue is full: let deliveries drain it, then retry
            while True:
                self._producer.poll(0.05)
                try:
                    self._producer.produce(topic, value, key)
                    break
                except BufferError:
                    continue
        except KafkaException as error:  # refused before queueing, e.g. larger than message.max.bytes
            raise DeliveryError([FailedDelivery(topic, _bytes(key), value, error.args[0].str())]) from None
        self.sent += 1
        if self.sent % POLL_EVERY == 0:
            self._producer.poll(0)

    # --- recording straight from provider responses (builders below) -------------------------

    def record_usage(self, usage: TokenUsage, **context: Any) -> UsageEvent:
        """Send a call from token counts; arguments as in :func:`usage_event`. Returns the event."""
        return self.send_usage(usage_event(usage, **context))

    def record_openai(self, response: Any, **context: Any) -> UsageEvent:
        """Send an OpenAI call; arguments as in :func:`event_from_openai`. Returns the event."""
        return self.send_usage(event_from_openai(response, **context))

    def record_anthropic(self, response: Any, **context: Any) -> UsageEvent:
        """Send an Anthropic call; arguments as in :func:`event_from_anthropic`. Returns the event."""
        return self.send_usage(event_from_anthropic(response, **context))

    def record_gemini(self, response: Any, **context: Any) -> UsageEvent:
        """Send a Gemini call; arguments as in :func:`event_from_gemini`. Returns the event."""
        return self.send_usage(event_from_gemini(response, **context))

    def record_outcome(self, outcome_type: str, success: bool, **context: Any) -> OutcomeEvent:
        """Send an outcome; arguments as in :func:`outcome_event`. Returns the event."""
        return self.send_outcome(outcome_event(outcome_type, success, **context))

    # --- delivery ----------------------------------------------------------------------------

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is None:  # only with delivery.report.only.error overridden to False
            return
        failure = FailedDelivery(message.topic(), message.key(), message.value(), error.str(), error.retriable())
        self.failures.append(failure)
        if self.on_error is not None:
            self.on_error(failure)

    def _on_client_error(self, error: KafkaError) -> None:
        # Connection trouble is retried by librdkafka and ends, if it lasts, in failed deliveries
        # (message.timeout.ms); a fatal error (e.g. idempotence broken) ends the producer.
        if error.fatal():
            self._fatal = error
        log.debug("kafka client: %s", error.str())

    def poll(self, timeout: float = 0) -> int:
        """Serve pending delivery callbacks; returns how many were served."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued message is delivered or failed; raise DeliveryError on failures.

        Without a timeout this waits at most message.timeout.ms (librdkafka fails what it cannot
        deliver by then). Failures are raised once and then forgotten.
        """
        left = self._producer.flush() if timeout is None else self._producer.flush(timeout)
        self._raise_failures(f"{left} messages still queued after {timeout}s; flush again" if left else None)

    def _raise_failures(self, extra: str | None = None) -> None:
        failures, self.failures = self.failures, []
        if self._fatal is not None:
            failures.append(FailedDelivery("", None, None, f"producer failed: {self._fatal.str()}"))
        if extra:
            failures.append(FailedDelivery("", None, None, extra))
        if failures:
            raise DeliveryError(failures, self.sent)

    def check(self, timeout: float = 10) -> None:
        """Fail fast with a clear message when the brokers do not answer or a topic is missing."""
        try:
            topics = self._producer.list_topics(timeout=timeout).topics
        except KafkaException as error:
            raise YieldmeterError(
                f"No Kafka broker answers at {self.settings.bootstrap_servers} ({error.args[0].str()}). "
                "Start one with `yieldmeter up` or set YIELDMETER_KAFKA_BOOTSTRAP."
            ) from None
        missing = [t for t in (self.events_topic, self.outcomes_topic, self.dlq_topic) if t not in topics]
        if missing:
            raise YieldmeterError(
                f"Topic(s) {', '.join(missing)} do not exist on {self.settings.bootstrap_servers}; "
                "create them with `yieldmeter topics`."
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush and release the client; raise DeliveryError on failures.

        Messages still queued after ``timeout`` are purged and reported as failures with their
        key and value, so the caller can send them again (event ids make a re-send harmless).
        """
        if self._closed:
            return
        self._closed = True
        try:
            left = self._producer.flush() if timeout is None else self._producer.flush(timeout)
            if left:
                self._producer.purge()  # each purged message gets a failed delivery report
                self._producer.poll(0)
            self._raise_failures()
        finally:
            self._producer.close()

    def __enter__(self) -> UsageProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- events from provider responses --------------------------------------------------------


def usage_event(
    usage: TokenUsage,
    *,
    provider: str,
    model: str,
    org_id: str,
    team: str,
    user_id: str,
    app: str,
    session_id: str | None = None,
    latency_ms: int | None = None,
    occurred_at: datetime | None = None,
    request_model: str | None = None,
    event_id: str | None = None,
    **fields: Any,
) -> UsageEvent:
    """A validated UsageEvent from token counts (any provider; streams too:
    ``usage_event(from_openai_stream(chunks), provider="openai", model=...)``).

    ``model`` is the model that answered, as the provider named it (the pricing job normalises
    ids); ``request_model`` defaults to it. ``occurred_at`` defaults to now minus ``latency_ms``,
    the call's start. ``event_id`` defaults to a new UUIDv7. Other UsageEvent fields (feature,
    trace_id, status, error_type, retry_of, tool_calls, service_tier, operation, attributes)
    pass through ``fields``. Raises ContractError naming each bad field.
    """
    if occurred_at is None:
        occurred_at = datetime.now(UTC) - timedelta(milliseconds=latency_ms or 0)
    return _validate(UsageEvent, {
        "event_id": event_id or new_id(),
        "occurred_at": occurred_at,
        "org_id": org_id, "team": team, "user_id": user_id, "app": app,
        "provider": provider,
        "request_model": request_model or model,
        "response_model": model,
        "session_id": session_id,
        "latency_ms": latency_ms,
        **usage.as_event_fields(),
        **fields,
    })  # fmt: skip


def event_from_openai(response: Any, *, provider: str = "openai", **context: Any) -> UsageEvent:
    """A UsageEvent from an OpenAI Chat Completions or Responses result: the SDK object, its dict,
    or the list of a stream's chunks (requested with stream_options={"include_usage": True}).
    provider="azure.ai.openai" for Azure. Other arguments as in :func:`usage_event`; what the
    caller passes wins over what the response says (model, service_tier, tool_calls)."""
    if _is_stream(response):
        usage, found = from_openai_stream([as_dict(c) for c in response]), {}
    else:
        data = as_dict(response)
        chat = "prompt_tokens" in (as_dict(data.get("usage")) or {})
        usage = (from_openai_chat if chat else from_openai_responses)(data)
        calls = sum(len(_dig(c, "message", "tool_calls") or []) for c in data.get("choices") or []) + sum(
            1 for item in data.get("output") or [] if _dig(item, "type") == "function_call"
        )
        found = {"service_tier": data.get("service_tier"), "tool_calls": calls}
    return _from_response(usage, provider, response, found, context)


def event_from_anthropic(response: Any, *, provider: str = "anthropic", **context: Any) -> UsageEvent:
    """A UsageEvent from an Anthropic Messages result: the SDK object, its dict, or the list of a
    stream's events. provider="aws.bedrock" or "gcp.vertex_ai" for Claude served there."""
    if _is_stream(response):
        usage, found = from_anthropic_stream([as_dict(e) for e in response]), {}
    else:
        data = as_dict(response)
        tier = _dig(data, "usage", "service_tier")
        usage = from_anthropic(data)
        found = {
            "service_tier": "default" if tier == "standard" else tier,  # Anthropic's name for default
            "tool_calls": sum(1 for block in data.get("content") or [] if _dig(block, "type") == "tool_use"),
        }
    return _from_response(usage, provider, response, found, context)


def event_from_gemini(response: Any, *, provider: str = "gcp.gemini", **context: Any) -> UsageEvent:
    """A UsageEvent from a Gemini generateContent result (REST dict or google-genai object).
    Pass model= when the response has no modelVersion; provider="gcp.vertex_ai" for Vertex AI."""
    data = as_dict(response)
    parts = [part for c in data.get("candidates") or [] for part in _dig(c, "content", "parts") or []]
    found = {
        "operation": "generate_content",
        "tool_calls": sum(1 for p in parts if _dig(p, "functionCall") or _dig(p, "function_call")),
    }
    return _from_response(from_gemini(data), provider, data, found, context)


def _from_response(usage: TokenUsage, provider: str, response: Any, found: dict, context: dict) -> UsageEvent:
    merged = {k: v for k, v in found.items() if v} | {"model": find_model(response)} | context
    if not merged.get("model"):
        raise YieldmeterError("the response names no model; pass model='...'")
    return usage_event(usage, provider=provider, **merged)


def outcome_event(
    outcome_type: str,
    success: bool,
    *,
    org_id: str,
    team: str,
    user_id: str,
    app: str,
    session_id: str | None = None,
    trace_id: str | None = None,
    value_usd: Decimal | str | None = None,
    occurred_at: datetime | None = None,
    outcome_id: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> OutcomeEvent:
    """A validated OutcomeEvent; ``outcome_id`` defaults to a new UUIDv7, ``occurred_at`` to now.
    ``value_usd`` is a Decimal or a decimal string: a float is refused, money is never a float."""
    if isinstance(value_usd, float):
        raise TypeError("value_usd: money is never a float; pass a Decimal or a string such as '12.50'")
    return _validate(OutcomeEvent, {
        "outcome_id": outcome_id or new_id(),
        "occurred_at": occurred_at or datetime.now(UTC),
        "org_id": org_id, "team": team, "user_id": user_id, "app": app,
        "session_id": session_id, "trace_id": trace_id,
        "outcome_type": outcome_type, "success": success, "value_usd": value_usd,
        "attributes": dict(attributes or {}),
    })  # fmt: skip



# --- helpers ---------------------------------------------------------------------------------


def _validate(model: type, data: Any) -> Any:
    # The validator itself, not model_validate*: one Python frame less per event in the hot path.
    try:
        if isinstance(data, (bytes, str)):
            return model.__pydantic_validator__.validate_json(data)
        return model.__pydantic_validator__.validate_python(data)
    except ValidationError as error:
        raise ContractError(error, model) from None


def _bytes(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


def find_model(payload: Any) -> str | None:
    """The model a provider response (or stream, or OTel span) names: the answering model first."""
    if _is_stream(payload):
        return _last(find_model(item) for item in payload)
    data = as_dict(payload) if hasattr(payload, "model_dump") or hasattr(payload, "to_dict") else payload
    if not isinstance(data, Mapping):
        return None
    for key in ("model", "modelVersion", "model_version", "gen_ai.response.model", "gen_ai.request.model"):
        if isinstance(data.get(key), str) and data[key].strip():
            return data[key]
    for key in ("response", "message", "attributes"):  # Responses stream, Anthropic stream, OTel span
        if found := find_model(data.get(key)):
            return found
    return None


def _is_stream(response: Any) -> bool:
    return isinstance(response, (list, tuple))


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        data = as_dict(data)
        data = data.get(key) if isinstance(data, Mapping) else None
    return data


def _last(values: Iterable[Any]) -> Any:
    found = None
    for value in values:
        found = value or found
    return found
