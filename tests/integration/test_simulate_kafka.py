"""The simulator on the real broker: what the manifest says was produced is what a consumer reads."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from tests.kafka_helpers import consume_all
from yieldmeter.contracts import ContractError, parse_outcome, parse_usage
from yieldmeter.sdk import session_key
from yieldmeter.simulate import KafkaSink, SimulationOptions, simulate

pytestmark = pytest.mark.integration

OPTIONS = SimulationOptions(events=3_000, days=3, seed=21)
NOW = OPTIONS.end


def test_workload_round_trips_through_kafka(kafka, new_topics, tmp_path):
    events_topic, outcomes_topic = new_topics(2, partitions=4)
    manifest = simulate(OPTIONS, KafkaSink(kafka, events_topic, outcomes_topic, tmp_path / "manifest.json"))
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert manifest["output"]["events_topic"] == events_topic

    totals = manifest["totals"]
    usage = consume_all(kafka.bootstrap_servers, events_topic, totals["usage_lines"])
    outcomes = consume_all(kafka.bootstrap_servers, outcomes_topic, totals["outcomes"])
    assert len(usage) == totals["usage_lines"]
    assert len(outcomes) == totals["outcomes"]

    valid, rejected = [], 0
    for message in usage:
        try:
            event = parse_usage(message.value(), now=NOW)
        except ContractError:
            rejected += 1
            assert message.key() is None  # malformed lines go out unkeyed
            continue
        valid.append(event)
        assert message.key().decode() == session_key(event.org_id, event.user_id, event.app, event.session_id)
    assert rejected == totals["malformed"]
    assert len(valid) == totals["valid_usage_lines"]
    assert len({e.event_id for e in valid}) == totals["valid_usage_events"]
    assert Counter(e.org_id for e in {e.event_id: e for e in valid}.values()) == {
        org: c["usage_events"] for org, c in manifest["per_org"].items()}
    # one session, one partition: its calls stay in order for the sessionizer
    partitions = {}
    for message, event in zip((m for m in usage if m.key() is not None), valid, strict=True):
        if event.session_id:
            assert partitions.setdefault(event.session_id, message.partition()) == message.partition()
    assert sum(parse_outcome(m.value(), now=NOW).success for m in outcomes) == totals["successful_outcomes"]


def test_cli_produces_to_the_configured_topics(kafka, new_topics, tmp_path):
    from yieldmeter.cli import app

    events_topic, outcomes_topic = new_topics(2)
    env = {"YIELDMETER_STATE_DIR": str(tmp_path / "state"), "YIELDMETER_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
           "YIELDMETER_TOPIC_EVENTS": events_topic, "YIELDMETER_TOPIC_OUTCOMES": outcomes_topic,
           "YIELDMETER_TOPIC_PRICES": f"{events_topic}.prices", "YIELDMETER_TOPIC_PRICED": f"{events_topic}.priced",
           "YIELDMETER_TOPIC_SESSIONS": f"{events_topic}.sessions", "YIELDMETER_TOPIC_DLQ": f"{events_topic}.dlq",
           "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["simulate", "--events", "1000", "--days", "2", "--to-kafka"], env=env)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "state" / "simulate" / "manifest.json").read_text())
    assert manifest["output"]["kind"] == "kafka"
    assert "spend spike" in result.output
    usage = consume_all(kafka.bootstrap_servers, events_topic, manifest["totals"]["usage_lines"])
    assert len(usage) == manifest["totals"]["usage_lines"]
    from yieldmeter.topics import admin_client

    admin_client(kafka).delete_topics([env[k] for k in env if k.startswith("YIELDMETER_TOPIC_")
                                       and env[k] not in (events_topic, outcomes_topic)])
