"""Crash recovery: the continuous pipeline (price, sessionize and controls jobs) SIGKILLed
mid-stream, restarted from its last checkpoints, and its committed output holds every input
exactly once: each call priced once, in one closed session, counted once in its budget's
control (the exact spend of the priced calls), every dead letter once.

Events keep arriving before, during and after the crash (a producer thread), with dead letters
and re-deliveries mixed in, on two partitions, at parallelism 2.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, Producer

from tests.integration.test_pipeline_job import produce
from yieldmeter import budgets
from yieldmeter.budgets import Budget, period_bounds
from yieldmeter.contracts import PriceRecord, UsageEvent, to_json_bytes
from yieldmeter.controls import ControlsCache
from yieldmeter.pipeline_jobs import start_pipeline
from yieldmeter.topics import topic_layout

pytestmark = pytest.mark.integration

OPTIONS = {
    "session_gap": "10min", "out_of_orderness": "1min", "idle_timeout": "2s",
    "checkpoint_interval": "1s", "parallelism": 2,
}


class Tail:
    """A read_committed consumer that keeps every record of a topic seen so far."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"tail-{topic}", "auto.offset.reset": "earliest",
            "isolation.level": "read_committed", "enable.auto.commit": False,
        })
        self.consumer.subscribe([topic])
        self.rows: list[dict] = []

    def poll(self) -> list[dict]:
        while messages := self.consumer.consume(5000, 0.5):
            self.rows += [json.loads(m.value()) for m in messages if m.error() is None]
        return self.rows


class Stream(threading.Thread):
    """Produces calls (and a dead letter / re-delivery now and then) until stopped."""

    def __init__(self, bootstrap: str, topic: str, start: datetime):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})
        self.topic, self.start_time = topic, start
        self.valid: list[str] = []
        self.invalid = 0
        self.stopped = threading.Event()

    def event(self, i: int) -> UsageEvent:
        return UsageEvent(
            event_id=f"e{i}", occurred_at=self.start_time + timedelta(milliseconds=100 * i), org_id="acme",
            team="t", user_id=f"u{i % 40}", app="helpdesk", provider="openai", request_model="gpt-4o",
            input_tokens=1000 + i % 7, cache_read_tokens=500, output_tokens=200,
        )

    def run(self) -> None:
        i = 0
        while not self.stopped.is_set():
            for _ in range(200):  # ~2000 records/s
                event = self.event(i)
                self.producer.produce(self.topic, to_json_bytes(event), key=event.user_id.encode())
                self.valid.append(event.event_id)
                if i % 97 == 0:
                    self.producer.produce(self.topic, b'{"event_id": "broken"')
                    self.invalid += 1
                if i % 101 == 0 and i > 50:
                    again = self.event(i - 50)  # a re-delivery, well after the original
                    self.producer.produce(self.topic, to_json_bytes(again), key=again.user_id.encode())
                i += 1
            self.producer.poll(0)
            time.sleep(0.1)
        assert self.producer.flush(30) == 0


class Clock(threading.Thread):
    """A call of the current time every half second, from its own user, until stopped."""

    def __init__(self, bootstrap: str, topic: str, stream: Stream):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        self.topic, self.template = topic, stream.event(0)
        self.sent: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            tick = self.template.model_copy(update={
                "event_id": f"tick-{len(self.sent)}", "occurred_at": datetime.now(UTC), "user_id": "clock",
            })  # fmt: skip
            self.producer.produce(self.topic, to_json_bytes(tick), key=b"clock")
            self.producer.poll(0)
            self.sent.append(tick.event_id)
        assert self.producer.flush(30) == 0


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_killed_job_resumes_from_its_checkpoint_exactly_once(settings, new_topics):
    events, prices, priced, sessions, dlq = new_topics(5, partitions=2)
    (budgets_topic,) = new_topics(config=topic_layout()["budgets"]["config"])
    (controls_topic,) = new_topics(config=topic_layout()["controls"]["config"])
    topics = {"events_topic": events, "prices_topic": prices, "priced_topic": priced,
              "sessions_topic": sessions, "dlq_topic": dlq, "budgets_topic": budgets_topic,
              "controls_topic": controls_topic, "group_id": f"g-{events}"}
    config = settings.model_copy(update={"topic_budgets": budgets_topic, "topic_controls": controls_topic})
    budget = Budget(org_id="acme", team="t", limit_usd=Decimal(1_000_000))
    budgets.publish([budget], config)
    price = PriceRecord(provider="openai", model="gpt-4o", effective_from="1970-01-01T00:00:00Z",
                        input_per_mtok="2.5", output_per_mtok="10", cache_read_per_mtok="1.25", source="user")
    produce(settings.bootstrap_servers, prices, [(price.price_id.encode(), to_json_bytes(price))])
    now = datetime.now(UTC).replace(microsecond=0)
    stream = Stream(settings.bootstrap_servers, events, start=now - timedelta(days=1))
    out, closed, dead = (Tail(settings.bootstrap_servers, t) for t in (priced, sessions, dlq))
    checkpoints = settings.state_path / "flink" / "checkpoints" / "pipeline" / "price" / "continuous"
    clock = Clock(settings.bootstrap_servers, events, stream)
    cache = ControlsCache(config)  # follows usage.controls, as a gateway does

    def control():
        return next(iter(cache.controls_for("acme", "t")), None)

    def spend_in_period() -> tuple[int, Decimal]:
        """The budget's control as the priced output says it should be: calls and exact spend
        in the period of the newest call."""
        rows = out.poll()
        newest = max(datetime.fromisoformat(r["occurred_at"]) for r in rows)
        start, end = period_bounds(newest, budget.time_zone, budget.period)
        mine = [r for r in rows if start <= datetime.fromisoformat(r["occurred_at"]) < end]
        return len(mine), sum((Decimal(r["cost_usd"]) for r in mine), Decimal(0))

    stream.start()
    job = start_pipeline(settings, bounded=False, **topics, **OPTIONS)
    try:
        # Crash once a checkpoint has committed some output, while events keep coming.
        wait_for(lambda: len(list(checkpoints.glob("*/chk-*/_metadata"))) and out.poll(), 300, "a checkpoint with output")
        assert job.process.poll() is None, job.log_tail()
        job.stop()  # SIGKILL to its process group: a crash
        before = len(out.poll())
        assert before < len(stream.valid)
        time.sleep(2)

        job = start_pipeline(settings, bounded=False, **topics, **OPTIONS)
        wait_for(lambda: len(out.poll()) > before, 300, "output after the restart")
        stream.stopped.set()
        stream.join(30)
        # A call is priced once the price job's watermark passes it (through four chained joins,
        # a few watermark steps), and a session closes once the sessionize job's watermark, which
        # the priced calls carry, passes it. A clock ticking calls of now moves both past the
        # whole stream; its own calls may or may not be out by the end.
        clock.start()
        wait_for(lambda: len(set(stream.valid) - {r["event_id"] for r in out.poll()}) == 0, 300, "every call priced")
        users = lambda: sum(s["calls"] for s in closed.poll() if s["user_id"] != "clock")  # noqa: E731
        wait_for(lambda: users() >= len(stream.valid), 300, "every session closed")
        wait_for(lambda: len(dead.poll()) >= stream.invalid, 300, "every dead letter")
        clock.stopped.set()
        clock.join(30)
        wait_for(lambda: control() and control().calls >= spend_in_period()[0], 300, "a control counting every call")
        time.sleep(3)  # a few more checkpoints: anything written or counted twice would show now
        assert job.process.poll() is None, job.log_tail()
        final = control()
    finally:
        stream.stopped.set()
        clock.stopped.set()
        cache.close()
        job.stop()

    ids = [row["event_id"] for row in out.poll()]
    assert len(ids) == len(set(ids)), "a call is written twice"
    assert set(stream.valid) <= set(ids) <= set(stream.valid) | set(clock.sent), "a call is missing"
    assert all(row["pricing_status"] == "priced" for row in out.rows)
    letters = {(d["source_partition"], d["source_offset"]) for d in dead.poll()}
    assert len(letters) == len(dead.rows) == stream.invalid
    assert users() == len(stream.valid)
    assert len({s["session_uid"] for s in closed.rows}) == len(closed.rows)
    assert f"Resuming from checkpoint {checkpoints.as_uri()}" in job.log.read_text(errors="replace")
    assert (final.calls, final.spent_usd) == spend_in_period(), "the control counts a call twice or misses one"
    assert final.spent_usd > 0 and final.unpriced_calls == 0
