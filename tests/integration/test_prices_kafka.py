"""The price catalog on the real broker: load -> list round trips, idempotent loads, tombstones."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource

from tests.conftest import make_settings
from yieldmeter.prices import build_catalog, publish, read_topic
from yieldmeter.topics import admin_client, topic_layout

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "infra" / "prices" / "overrides.example.yaml"


@pytest.fixture
def prices_settings(kafka, new_topics, tmp_path):
    (topic,) = new_topics(config=topic_layout()["prices"]["config"])  # compacted, as in production
    return make_settings(tmp_path / "state", kafka_bootstrap=kafka.bootstrap_servers, topic_prices=topic)


def test_load_twice_reads_back_one_record_per_key(prices_settings):
    catalog = build_catalog([EXAMPLE])
    sent = publish(catalog, prices_settings)
    assert sent == len(catalog.prices) + len(catalog.discounts) > 1000
    assert publish(build_catalog([EXAMPLE]), prices_settings) == sent

    contents = read_topic(prices_settings)
    assert contents.messages == 2 * sent  # both loads are on the log until compaction runs
    assert contents.problems == []
    # the reader keeps the latest message per key, as compaction will: the catalog, once
    assert contents.catalog.prices == catalog.prices
    assert contents.catalog.discounts == catalog.discounts


def test_tombstone_deletes_one_price(prices_settings):
    catalog = build_catalog([EXAMPLE], seed=False)
    publish(catalog, prices_settings)
    gone = "acme-gateway/llama-3.3-70b-instruct/default@1970-01-01T00:00:00.000Z"
    producer = Producer({"bootstrap.servers": prices_settings.bootstrap_servers})
    producer.produce(prices_settings.topic_prices, None, key=gone.encode())
    assert producer.flush(30) == 0
    prices = read_topic(prices_settings).catalog.prices
    assert gone not in prices and set(prices) == set(catalog.prices) - {gone}


def test_load_creates_a_missing_topic_compacted(kafka, tmp_path):
    topic = f"test.prices.{uuid.uuid4().hex[:8]}"
    settings = make_settings(tmp_path / "state", kafka_bootstrap=kafka.bootstrap_servers, topic_prices=topic)
    admin = admin_client(kafka)
    try:
        publish(build_catalog([EXAMPLE], seed=False), settings)
        (future,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
        assert future.result()["cleanup.policy"].value == "compact"
        assert len(read_topic(settings).catalog.prices) == 3
    finally:
        admin.delete_topics([topic])


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "YIELDMETER_STATE_DIR": str(settings.state_dir), "YIELDMETER_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
           "YIELDMETER_TOPIC_PRICES": settings.topic_prices}
    return subprocess.run([sys.executable, "-m", "yieldmeter", *args], capture_output=True, text=True, env=env,
                          timeout=180)


def test_cli_load_then_list(prices_settings):
    loaded = cli(prices_settings, "prices", "load", str(EXAMPLE))
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert f"to {prices_settings.topic_prices}" in loaded.stdout and "3 user prices" in loaded.stdout

    listed = cli(prices_settings, "prices", "list", "-p", "openai", "-m", "gpt-4o-mini", "--at", "2027-02-01")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "│ default" in line)
    assert "gpt-4o-mini" in row and "0.12" in row and "0.48" in row and "user" in row
    before = cli(prices_settings, "prices", "list", "-p", "openai", "-m", "gpt-4o-mini", "--at", "2026-06-01")
    row = next(line for line in before.stdout.splitlines() if "│ default" in line)
    assert "0.15" in row and "genai-prices" in row  # the seed price before the user's change
    discounts = before.stdout.split("Discounts in force")[1]
    assert "acme" in discounts and "12.5" in discounts and "* (all)" in discounts


def test_list_says_when_the_topic_is_missing(kafka, tmp_path):
    settings = make_settings(tmp_path / "state", kafka_bootstrap=kafka.bootstrap_servers,
                             topic_prices=f"test.absent.{uuid.uuid4().hex[:8]}")
    result = cli(settings, "prices", "list")
    assert result.returncode == 1
    assert "does not exist yet" in result.stdout and "Traceback" not in result.stdout + result.stderr
