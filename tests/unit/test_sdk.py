"""The producer SDK without a broker: event builders, keys, validation, failures kept with their data."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, free_port, make_settings
from yieldmeter.contracts import ContractError, parse_usage, to_json_bytes
from yieldmeter.errors import YieldmeterError
from yieldmeter.normalize import TokenUsage
from yieldmeter.sdk import (
    DeliveryError,
    ProducerSettings,
    UsageProducer,
    dead_letter,
    event_from_anthropic,
    event_from_gemini,
    event_from_openai,
    find_model,
    new_id,
    outcome_event,
    session_key,
    usage_event,
)

pytestmark = pytest.mark.unit

PAYLOADS = Path(__file__).parent / "fixtures" / "provider_payloads"
WHO = {"org_id": "acme", "team": "support", "user_id": "u-42", "app": "helpdesk"}


def load(name: str):
    return json.loads((PAYLOADS / name).read_text())


# --- keys and ids ----------------------------------------------------------------------------


def test_key_is_the_session_or_the_sessionizer_fallback():
    assert session_key("acme", "u-42", "helpdesk", "ticket-7") == "acme/ticket-7"
    # No session id: the Flink sessionizer groups by (org, user, app), so the key is that triple.
    assert session_key("acme", "u-42", "helpdesk", None) == "acme/u-42/helpdesk"
    assert session_key("acme", "u-42", "helpdesk", "") == "acme/u-42/helpdesk"


def test_ids_are_uuid7_carrying_their_creation_time():
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for value in map(uuid.UUID, ids):
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert before <= value.int >> 80 <= after


# --- events from provider responses ----------------------------------------------------------

CASES = [
    # builder, fixture, expected fields
    (event_from_openai, "openai_chat_cached.json",
     {"provider": "openai", "response_model": "gpt-4o-2024-08-06", "input_tokens": 2006, "cache_read_tokens": 1920,
      "output_tokens": 300, "service_tier": "default"}),
    (event_from_openai, "openai_responses.json",
     {"response_model": "gpt-5-2025-08-07", "input_tokens": 5200, "cache_read_tokens": 4096, "output_tokens": 1800,
      "reasoning_tokens": 1344}),
    (event_from_openai, "openai_chat_stream.json",
     {"response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 1500, "cache_read_tokens": 1280, "output_tokens": 12}),
    (event_from_openai, "openai_responses_stream.json",
     {"response_model": "gpt-5-mini-2025-08-07", "input_tokens": 37, "output_tokens": 220, "reasoning_tokens": 192}),
    (event_from_anthropic, "anthropic_message_cached.json",
     {"provider": "anthropic", "response_model": "claude-sonnet-4-5-20250929", "input_tokens": 12098,
      "cache_read_tokens": 10000, "cache_write_tokens": 2048, "output_tokens": 503, "service_tier": "default"}),
    (event_from_anthropic, "anthropic_stream.json",
     {"response_model": "claude-opus-4-5-20251101", "input_tokens": 3472, "cache_read_tokens": 3000, "output_tokens": 89}),
    (event_from_gemini, "gemini_generate_content.json",
     {"provider": "gcp.gemini", "response_model": "gemini-2.5-pro", "operation": "generate_content",
      "input_tokens": 12050, "cache_read_tokens": 8000, "output_tokens": 1600, "reasoning_tokens": 1200}),
]


@pytest.mark.parametrize(("build", "fixture", "expected"), CASES, ids=[c[1] for c in CASES])
def test_event_from_response(build, fixture, expected):
    event = build(load(fixture), session_id="ticket-7", latency_ms=1200, **WHO)
    assert {k: getattr(event, k) for k in expected} == expected
    assert event.request_model == event.response_model  # no request model given: the answering one
    assert (event.org_id, event.user_id, event.app, event.session_id) == ("acme", "u-42", "helpdesk", "ticket-7")
    uuid.UUID(event.event_id)
    # The event survives the wire unchanged.
    assert parse_usage(to_json_bytes(event)) == event


def test_occurred_at_is_the_call_start():
    before = datetime.now(UTC)
    event = event_from_openai(load("openai_chat_cached.json"), latency_ms=60_000, **WHO)
    assert before - timedelta(seconds=61) <= event.occurred_at <= datetime.now(UTC) - timedelta(seconds=59)
    given = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert event_from_openai(load("openai_chat_cached.json"), occurred_at=given, **WHO).occurred_at == given.replace(
        microsecond=123000
    )


def test_caller_wins_over_the_response():
    event = event_from_openai(
        load("openai_chat_cached.json"), provider="azure.ai.openai", model="my-gpt4o-deployment",
        request_model="gpt-4o", service_tier="flex", event_id="call-1", feature="summarise", **WHO,
    )  # fmt: skip
    assert (event.provider, event.response_model, event.request_model) == ("azure.ai.openai", "my-gpt4o-deployment", "gpt-4o")
    assert (event.service_tier, event.event_id, event.feature) == ("flex", "call-1", "summarise")


def test_tool_calls_are_counted():
    chat = load("openai_chat_cached.json")
    chat["choices"][0]["message"]["tool_calls"] = [{"id": "a"}, {"id": "b"}]
    assert event_from_openai(chat, **WHO).tool_calls == 2
    claude = load("anthropic_message_cached.json")
    claude["content"].append({"type": "tool_use", "id": "t1", "name": "lookup", "input": {}})
    assert event_from_anthropic(claude, **WHO).tool_calls == 1
    gemini = load("gemini_generate_content.json")
    gemini["candidates"][0]["content"]["parts"].append({"functionCall": {"name": "f", "args": {}}})
    assert event_from_gemini(gemini, **WHO).tool_calls == 1


def test_sdk_objects_are_read_like_their_dicts():
    from pydantic import BaseModel, ConfigDict

    class Response(BaseModel):  # stands in for openai.types.chat.ChatCompletion: a pydantic model
        model_config = ConfigDict(extra="allow")

    response = Response(**load("openai_chat_cached.json"))
    assert event_from_openai(response, event_id="x", occurred_at=datetime(2026, 1, 1, tzinfo=UTC), **WHO) == (
        event_from_openai(load("openai_chat_cached.json"), event_id="x", occurred_at=datetime(2026, 1, 1, tzinfo=UTC), **WHO)
    )


def test_missing_model_is_named():
    payload = load("gemini_generate_content.json")
    del payload["modelVersion"]
    with pytest.raises(YieldmeterError, match="names no model; pass model="):
        event_from_gemini(payload, **WHO)
    assert event_from_gemini(payload, model="gemini-2.5-pro", **WHO).response_model == "gemini-2.5-pro"


def test_find_model():
    assert find_model(load("otel_span.json")) == "gpt-4o-2024-08-06"
    assert find_model(load("bedrock_converse_cached.json")) is None
    assert find_model([{"model": "a"}, {"type": "ping"}, {"model": "b"}]) == "b"


def test_bad_fields_are_named():
    usage = TokenUsage(input_tokens=10, output_tokens=5)
    with pytest.raises(ContractError) as error:
        usage_event(usage, provider="openai", model="gpt-4o", **(WHO | {"user_id": ""}), latency_ms=-5)
    assert "user_id" in str(error.value) and "latency_ms" in str(error.value)
    with pytest.raises(ContractError, match="must carry a UTC offset"):
        usage_event(usage, provider="openai", model="gpt-4o", occurred_at=datetime(2026, 1, 1), **WHO)


def test_outcome_event():
    event = outcome_event("ticket_resolved", True, value_usd=Decimal("12.50"), session_id="ticket-7", **WHO)
    assert json.loads(to_json_bytes(event))["value_usd"] == "12.50"
    uuid.UUID(event.outcome_id)
    with pytest.raises(TypeError, match="never a float"):
        outcome_event("ticket_resolved", True, value_usd=12.5, **WHO)
    with pytest.raises(ContractError, match="outcome_type"):
        outcome_event("Ticket Resolved", True, **WHO)


def test_dead_letter_has_the_warehouse_columns():
    sql = (PROJECT_ROOT / "infra/clickhouse/migrations/0001_dead_letters.up.sql").read_text()
    body = sql[sql.index("(") + 1 : sql.index("ENGINE")]
    columns = {m for m in re.findall(r"^\s+(\w+)\s", body, re.M) if not m.startswith("_")}
    record = dead_letter(b"not json \xff", "broken", source_topic="file:/x.jsonl", source_offset=3, line=3)
    assert columns <= record.keys()
    assert (record["source_partition"], record["source_offset"], record["line"]) == (-1, 3, 3)
    assert record["payload"] == "not json \\xff"  # undecodable bytes kept visible, not dropped
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["rejected_at"])


# --- the producer, with no broker answering -------------------------------------------------


@pytest.fixture
def nobody(tmp_path):
    """Settings pointing at a port where no broker listens."""
    return make_settings(tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}")


def test_invalid_events_are_refused_before_sending(nobody):
    producer = UsageProducer(nobody)
    with pytest.raises(ContractError, match="input_tokens"):
        producer.send_usage({"event_id": "e1", "input_tokens": -1})
    with pytest.raises(ContractError, match="Invalid JSON"):
        producer.send_usage(b"{not json")
    assert producer.sent == 0
    producer.close(0)  # nothing queued: nothing to report


def test_undelivered_messages_are_kept_with_their_data(nobody):
    failed = []
    producer = UsageProducer(nobody, on_error=failed.append)
    event = usage_event(TokenUsage(10, 5), provider="openai", model="gpt-4o", session_id="s-1", **WHO)
    assert producer.send_usage(event.model_dump()) == event
    producer.send_raw("somewhere", "k", b"raw")
    with pytest.raises(DeliveryError, match=r"2 of 2 messages were not delivered") as error:
        producer.close(timeout=0.5)
    by_topic = {f.topic: f for f in error.value.failures}
    assert by_topic[nobody.topic_events].key == b"acme/s-1"
    assert by_topic[nobody.topic_events].value == to_json_bytes(event)
    assert by_topic["somewhere"].value == b"raw"
    assert len(failed) == 2


def test_too_large_is_refused_at_once(nobody):
    producer = UsageProducer(nobody, config={"message.max.bytes": 2000})
    big = usage_event(TokenUsage(10, 5), provider="openai", model="gpt-4o", attributes={"x": "y" * 1000, "z": "w" * 1000},
                      **WHO)  # fmt: skip
    with pytest.raises(DeliveryError, match="too large") as error:
        producer.send_usage(big)
    assert error.value.failures[0].value == to_json_bytes(big)
    producer.close(0)


def test_bootstrap_string_and_topic_overrides(nobody, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    producer = UsageProducer(nobody.bootstrap_servers, events_topic="mine.events")
    assert producer.settings.bootstrap_servers == nobody.bootstrap_servers
    assert (producer.events_topic, producer.outcomes_topic, producer.dlq_topic) == (
        "mine.events", "usage.outcomes", "usage.dlq"
    )
    producer.close(0)



@pytest.mark.parametrize("env", [
    {},
    {"YIELDMETER_KAFKA_PORT": "19092", "YIELDMETER_TOPIC_EVENTS": "a.events", "YIELDMETER_TOPIC_OUTCOMES": "a.outcomes",
     "YIELDMETER_TOPIC_DLQ": "a.dlq"},
    {"YIELDMETER_KAFKA_BOOTSTRAP": "k1:9092,k2:9092", "YIELDMETER_KAFKA_PORT": "19092"},
])
def test_the_sdk_reads_the_same_variables_as_the_application(env, monkeypatch):
    # The SDK has no pydantic-settings; what it reads must still mean what the app's Settings read.
    from yieldmeter.config import Settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app, sdk = Settings(_env_file=None), ProducerSettings.from_env()
    assert (sdk.bootstrap_servers, sdk.topic_events, sdk.topic_outcomes, sdk.topic_dlq) == (
        app.bootstrap_servers, app.topic_events, app.topic_outcomes, app.topic_dlq)
