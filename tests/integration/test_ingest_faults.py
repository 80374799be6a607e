"""The ingesting process killed mid-stream and restarted: no loss, no doubles.

Runs `yieldmeter ingest` as a user would (a subprocess owning the embedded warehouse) and
kills it: once at the worst moment (rows stored, offsets not committed: tests/integration/
crashing_ingest.py wraps the command and exits there) and several times with SIGKILL at
random points. `reconcile` must then find every record
exactly once, with equal cost totals, and the hourly rollup must agree with the calls.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from tests.conftest import PROJECT_ROOT, make_settings
from tests.integration.crashing_ingest import CRASHED
from yieldmeter.check import reconcile
from yieldmeter.contracts import UsageEvent
from yieldmeter.ingest import ROUTES
from yieldmeter.warehouse import open_warehouse

pytestmark = pytest.mark.integration

ROUTED = tuple(route.topic_key for route in ROUTES)  # every topic the ingest reads
CALLS = 12_000


def priced_record(i: int) -> bytes:
    """A usage.priced record as the pipeline job writes it (the fields the calls table keeps)."""
    event = UsageEvent(
        event_id=f"e-{i}", occurred_at=datetime(2026, 11, 2, tzinfo=UTC) + timedelta(seconds=37 * i),
        org_id=f"org{i % 3}", team=f"t{i % 4}", user_id=f"u{i % 50}", app="support-bot", provider="openai",
        request_model="gpt-4o", input_tokens=1000 + i % 700, cache_read_tokens=i % 300, output_tokens=200 + i % 90,
        session_id=f"s-{i // 5}",
    )  # fmt: skip
    record = json.loads(event.model_dump_json())
    cost = Decimal(record["input_tokens"]) * Decimal("0.0000025") + Decimal(record["output_tokens"]) * Decimal("0.00001")
    record |= {
        "model": "gpt-4o", "session_key": f"org{i % 3}/s-{i // 5}", "pricing_status": "priced",
        "price_id": "openai/gpt-4o/default@1970-01-01T00:00:00.000Z", "list_cost_usd": str(cost),
        "cost_usd": str(cost), "source_topic": "usage.events", "source_partition": 0, "source_offset": i,
    }  # fmt: skip
    return json.dumps(record).encode()


@pytest.fixture
def env(kafka, tmp_path, new_topics):
    names = new_topics(len(ROUTED), partitions=3)
    topics = {f"topic_{key}": name for key, name in zip(ROUTED, names)}
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 20})
    for i in range(CALLS):
        producer.produce(topics["topic_priced"], priced_record(i), key=f"e-{i}")
    assert producer.flush(60) == 0
    settings = make_settings(tmp_path / "state", kafka_bootstrap=kafka.bootstrap_servers, **topics)
    variables = {f"YIELDMETER_{k.upper()}": v for k, v in topics.items()} | {
        "YIELDMETER_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "YIELDMETER_STATE_DIR": str(tmp_path / "state"),
        "YIELDMETER_INGEST_BATCH_SIZE": "500",
        "PATH": os.environ["PATH"],
    }
    return settings, variables


def ingest(variables: dict, crash_before_commit: int | None = None) -> subprocess.Popen:
    """`yieldmeter ingest --until-caught-up` in a process of its own; with ``crash_before_commit``,
    wrapped to die when it is about to commit that batch."""
    if crash_before_commit is None:
        command = ["yieldmeter", "ingest"]
    else:
        command = ["tests.integration.crashing_ingest", str(crash_before_commit)]
    return subprocess.Popen([sys.executable, "-m", *command, "--until-caught-up"], env=variables, cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def assert_exactly_once(settings):
    with open_warehouse(settings.warehouse_url) as client:
        results = {r.table: r for r in reconcile(settings, client)}
        calls = results["calls"]
        assert calls.in_topic == CALLS and calls.ok, calls.differences()
        assert all(r.ok for r in results.values()), [r.differences() for r in results.values()]
        rows, cost = client.query("SELECT count(), sum(cost_usd) FROM calls").result_rows[0]
        hourly = client.query("SELECT sum(calls), sum(cost_usd) FROM calls_hourly").result_rows[0]
        assert rows == CALLS and hourly[0] == CALLS
        assert abs(hourly[1] - cost) < Decimal("1e-9")  # the rollup keeps 12 decimals


def test_crash_between_insert_and_commit(env):
    settings, variables = env
    crashed = ingest(variables, crash_before_commit=5)
    assert crashed.wait(120) == CRASHED, crashed.stdout.read()
    done = ingest(variables)
    output = done.communicate(timeout=120)[0]
    assert done.returncode == 0, output
    assert "re-delivered skipped" in output and " 0 re-delivered" not in output  # batch 5 came back
    assert_exactly_once(settings)


def test_random_sigkills(env):
    settings, variables = env
    rng = random.Random(7)
    for _ in range(3):
        victim = ingest(variables)
        time.sleep(rng.uniform(1.5, 4.0))
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    final = ingest(variables)
    assert final.wait(180) == 0, final.stdout.read()
    assert_exactly_once(settings)
