"""The producer SDK and `yieldmeter produce | normalize` on the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import DEV_LIB
from tests.kafka_helpers import consume_all
from yieldmeter.contracts import OutcomeEvent, UsageEvent, parse_outcome, parse_usage, to_json_bytes
from yieldmeter.errors import YieldmeterError
from yieldmeter.normalize import TokenUsage
from yieldmeter.sdk import DeliveryError, UsageProducer, outcome_event, session_key, usage_event

pytestmark = pytest.mark.integration

PAYLOADS = Path(__file__).parent.parent / "unit" / "fixtures" / "provider_payloads"
WHO = {"org_id": "acme", "team": "support", "app": "helpdesk"}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def event(i: int, session: str | None, user: str = "u-1") -> UsageEvent:
    return usage_event(
        TokenUsage(input_tokens=1000 + i, output_tokens=10 + i % 50, cache_read_tokens=i % 100),
        provider="openai", model="gpt-4o-mini", user_id=user, session_id=session, latency_ms=i % 900,
        occurred_at=T0 + timedelta(milliseconds=i), event_id=f"call-{i}", attributes={"seq": str(i), "ü": "ß"}, **WHO,
    )  # fmt: skip


# --- SDK ---------------------------------------------------------------------------------------


def test_round_trip_is_lossless_and_sessions_stay_ordered(settings, new_topics):
    events_topic, outcomes_topic = new_topics(2, partitions=3)
    # 32 explicit sessions, plus calls without a session id from 7 users (keyed org/user/app).
    sent = [event(i, f"s-{i % 40}" if i % 5 else None, user=f"u-{i % 7}") for i in range(5000)]
    outcomes = [outcome_event("ticket_resolved", i % 3 > 0, value_usd=f"{i}.25", session_id=f"s-{i}",
                              occurred_at=T0, user_id="u-1", **WHO) for i in range(40)]  # fmt: skip
    with UsageProducer(settings, events_topic=events_topic, outcomes_topic=outcomes_topic) as producer:
        for e in sent[:2500]:
            producer.send_usage(e)
        for e in sent[2500:]:
            producer.send_usage(e.model_dump())  # dicts are validated on the way
        for o in outcomes:
            producer.send_outcome(o)

    received = consume_all(settings.bootstrap_servers, events_topic, len(sent))
    assert len(received) == len(sent)
    assert sorted((parse_usage(m.value()) for m in received), key=lambda e: e.event_id) == sorted(
        sent, key=lambda e: e.event_id
    )
    per_key, partitions = defaultdict(list), defaultdict(set)
    for m in received:  # consumption order within a partition = the order the broker stored
        per_key[m.key()].append(int(parse_usage(m.value()).attributes["seq"]))
        partitions[m.key()].add(m.partition())
    keys = {session_key(e.org_id, e.user_id, e.app, e.session_id).encode() for e in sent}
    assert per_key.keys() == keys and len(keys) == 32 + 7
    assert b"acme/s-1" in keys and b"acme/u-0/helpdesk" in keys
    assert all(seqs == sorted(seqs) for seqs in per_key.values())
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) == 3

    got = consume_all(settings.bootstrap_servers, outcomes_topic, len(outcomes))
    assert sorted((parse_outcome(m.value()) for m in got), key=lambda o: o.outcome_id) == sorted(
        outcomes, key=lambda o: o.outcome_id
    )


def test_record_helpers_send_what_the_response_says(settings, new_topics):
    (topic,) = new_topics()
    payload = json.loads((PAYLOADS / "anthropic_message_cached.json").read_text())
    with UsageProducer(settings, events_topic=topic) as producer:
        sent = producer.record_anthropic(payload, user_id="u-9", session_id="t-1", latency_ms=800, **WHO)
    (message,) = consume_all(settings.bootstrap_servers, topic, 1)
    assert message.key() == b"acme/t-1" and message.value() == to_json_bytes(sent)
    assert (sent.input_tokens, sent.cache_write_tokens, sent.response_model) == (12098, 2048, "claude-sonnet-4-5-20250929")


def test_broker_refusal_surfaces_with_the_data(settings, new_topics):
    (small,) = new_topics(config={"max.message.bytes": "1024"})
    failed = []
    producer = UsageProducer(settings, events_topic=small, on_error=failed.append)
    fits = event(1, "s-1")
    too_big = usage_event(TokenUsage(10, 5), provider="openai", model="gpt-4o", user_id="u-1",
                          attributes={f"k{i}": os.urandom(50).hex() for i in range(30)}, **WHO)  # fmt: skip
    producer.send_usage(fits)
    producer.flush()  # its own batch: the broker refuses whole batches (sizes count after compression)
    producer.send_usage(too_big)
    with pytest.raises(DeliveryError, match="1 of 2 messages were not delivered.*too large") as error:
        producer.close()
    (failure,) = error.value.failures
    assert failure.value == to_json_bytes(too_big) and failure.topic == small
    assert failed == [failure]
    assert [m.value() for m in consume_all(settings.bootstrap_servers, small, 1)] == [to_json_bytes(fits)]


def test_missing_topic_surfaces(settings):
    # The broker does not auto-create topics (infra/kafka/server.properties).
    producer = UsageProducer(settings, events_topic="no.such.topic", config={"topic.metadata.propagation.max.ms": 1000})
    with pytest.raises(YieldmeterError, match="no.such.topic"):
        producer.check()
    producer.send_usage(event(1, "s-1"))
    with pytest.raises(DeliveryError, match="1 of 1 messages were not delivered.*no.such.topic"):
        producer.close()


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings, new_topics, tmp_path):
    events, outcomes, dlq = new_topics(3, partitions=2)
    return {
        "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
        "YIELDMETER_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "YIELDMETER_STATE_DIR": str(tmp_path / "state"), "YIELDMETER_LIB_DIR": str(DEV_LIB),
        "YIELDMETER_TOPIC_EVENTS": events, "YIELDMETER_TOPIC_OUTCOMES": outcomes, "YIELDMETER_TOPIC_DLQ": dlq,
    }  # fmt: skip


def cli(env: dict, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yieldmeter", *args], input=stdin, capture_output=True,
                          env=env, timeout=300, cwd=Path(env["YIELDMETER_STATE_DIR"]).parent)


def jsonl(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


BAD = [
    b'{"event_id": "bad-1", "occurred_at": "2026-03-01T12:00:00Z"}',
    b"{not json",
    json.dumps(json.loads(to_json_bytes(event(7, "s-1"))) | {"input_tokens": 5.0}).encode(),
]


def test_cli_produces_valid_lines_and_reports_invalid_ones(cli_env, tmp_path, settings):
    good = [event(i, f"s-{i % 9}") for i in range(300)]
    lines = [to_json_bytes(e) for e in good]
    # OTel attribute names and a non-UTC offset are valid input; the wire gets the canonical form.
    otel = {"event_id": "otel-1", "occurred_at": "2026-03-01T13:00:00.5+01:00", "org_id": "acme", "team": "t",
            "user.id": "u-1", "app": "a", "gen_ai.provider.name": "OpenAI", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}  # fmt: skip
    lines[10:10] = [BAD[0], b"", BAD[1], json.dumps(otel).encode()]
    lines.append(BAD[2])
    result = cli(cli_env, "produce", str(jsonl(tmp_path, lines)))
    assert result.returncode == 1, result.stderr
    stderr, stdout = result.stderr.decode(), result.stdout.decode()
    assert "line 11: org_id: required field is missing" in stderr and "provider: required field is missing" in stderr
    assert "line 13: (event): Invalid JSON" in stderr
    assert "line 305: input_tokens: Input should be a valid integer" in stderr
    assert "301 usage events" in stdout and "3 invalid" in stdout and "events/s" in stdout
    assert "Traceback" not in stderr

    received = {parse_usage(m.value()).event_id: m for m in consume_all(settings.bootstrap_servers,
                                                                   cli_env["YIELDMETER_TOPIC_EVENTS"], 301)}
    assert len(received) == 301
    assert all(received[e.event_id].value() == to_json_bytes(e) for e in good)
    wire = json.loads(received["otel-1"].value())
    assert (wire["provider"], wire["user_id"], wire["occurred_at"]) == ("openai", "u-1", "2026-03-01T12:00:00.500Z")
    assert received["otel-1"].key() == b"acme/u-1/a" and received["call-3"].key() == b"acme/s-3"


def test_cli_dead_letters_invalid_lines(cli_env, tmp_path, settings):
    lines = [to_json_bytes(event(1, "s-1")), *BAD, to_json_bytes(event(2, "s-1"))]
    path = jsonl(tmp_path, lines)
    result = cli(cli_env, "produce", "--dead-letter", str(path))
    assert result.returncode == 0, result.stderr
    assert "2 usage events" in result.stdout.decode() and f"3 invalid (sent to {cli_env['YIELDMETER_TOPIC_DLQ']})" in (
        result.stdout.decode()
    )
    letters = [json.loads(m.value()) for m in consume_all(settings.bootstrap_servers, cli_env["YIELDMETER_TOPIC_DLQ"], 3)]
    assert len(letters) == 3
    assert [(d["source_offset"], d["line"], d["payload"].encode()) for d in letters] == [
        (2, 2, BAD[0]), (3, 3, BAD[1]), (4, 4, BAD[2])
    ]
    for letter in letters:
        assert letter["source_topic"] == f"file:{path}" and letter["source_partition"] == -1
        assert letter["target_topic"] == cli_env["YIELDMETER_TOPIC_EVENTS"] and letter["reason"]
        datetime.fromisoformat(letter["rejected_at"])
    assert "required field is missing" in letters[0]["reason"] and "Invalid JSON" in letters[1]["reason"]
    assert len(consume_all(settings.bootstrap_servers, cli_env["YIELDMETER_TOPIC_EVENTS"], 2)) == 2


def test_cli_reads_stdin_and_sorts_kinds(cli_env, settings):
    calls = [to_json_bytes(event(i, "s-1")) for i in range(5)]
    outcome = to_json_bytes(outcome_event("pr_merged", True, session_id="s-1", user_id="u-1", **WHO))
    stdin = b"\n".join([*calls[:3], outcome, *calls[3:]]) + b"\n"

    as_usage = cli(cli_env, "produce", "-", stdin=stdin)  # default --kind usage: the outcome is invalid
    assert as_usage.returncode == 1
    assert b"line 4:" in as_usage.stderr and b"use --kind outcome or --kind auto" in as_usage.stderr

    auto = cli(cli_env, "produce", "--kind", "auto", "-", stdin=stdin)
    assert auto.returncode == 0, auto.stderr
    assert b"5 usage events" in auto.stdout and b"1 outcomes" in auto.stdout
    (message,) = consume_all(settings.bootstrap_servers, cli_env["YIELDMETER_TOPIC_OUTCOMES"], 1)
    assert OutcomeEvent.model_validate_json(message.value()) == parse_outcome(outcome)
    assert len(consume_all(settings.bootstrap_servers, cli_env["YIELDMETER_TOPIC_EVENTS"], 10)) == 10  # both runs


def test_cli_names_a_missing_topic(cli_env, tmp_path):
    env = cli_env | {"YIELDMETER_TOPIC_EVENTS": "no.such.topic"}
    result = cli(env, "produce", str(jsonl(tmp_path, [to_json_bytes(event(1, "s-1"))])))
    assert result.returncode == 1
    assert b"no.such.topic do not exist" in result.stdout and b"yieldmeter topics" in result.stdout


def test_cli_normalize(cli_env):
    result = cli(cli_env, "normalize", "--provider", "anthropic.messages", str(PAYLOADS / "anthropic_stream.json"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "input_tokens": 3472, "output_tokens": 89, "cache_read_tokens": 3000, "cache_write_tokens": 0,
        "reasoning_tokens": 0, "model": "claude-opus-4-5-20251101", "provider": "anthropic",
        "normalized_provider": "anthropic", "normalized_model": "claude-opus-4-5",
    }  # fmt: skip
    wrong = cli(cli_env, "normalize", "--provider", "gemini", str(PAYLOADS / "openai_chat_cached.json"))
    assert wrong.returncode == 1 and b"gemini usageMetadata: no token counts" in wrong.stdout
