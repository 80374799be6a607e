"""Producer throughput: the SDK (pre-built events, dicts, JSON lines) and `yieldmeter produce`.

    .venv/bin/python benchmarks/bench_producer.py [EVENTS]      (default 300000)

Uses the brokers in YIELDMETER_KAFKA_BOOTSTRAP, else starts a local KRaft broker from the jars
`make setup` fetched (temporary state folder, free ports) and stops it at the end. Every
measurement writes to a fresh 4-partition topic and checks that every event landed.
Figures: events/s from the first send to the end of flush (every delivery acknowledged), the
same per CPU-second of the producing process (all its threads; steadier than wall time on a
shared machine), and peak resident memory. Target: >= 100k events/s from one process.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import bench_settings, cpu_seconds, peak_rss_mb, run_with_peak_rss  # noqa: E402

from yieldmeter.config import Settings  # noqa: E402
from yieldmeter.contracts import UsageEvent, to_json_bytes
from yieldmeter.sdk import DEFAULT_CONFIG, UsageProducer, session_key
from yieldmeter.topics import admin_client, create_topics

TARGET = 100_000


def make_events(n: int) -> list[dict]:
    """A realistic mix: 5000 sessions over 500 users, a fifth of the calls without a session id."""
    t0 = datetime.now(UTC) - timedelta(hours=1)
    models = ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "gpt-5"]
    return [
        {
            "event_id": str(uuid.UUID(int=i)),
            "occurred_at": (t0 + timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "org_id": f"org-{i % 7}", "team": f"team-{i % 23}", "user_id": f"user-{i % 500}", "app": "helpdesk",
            "provider": ("openai", "anthropic", "gcp.gemini", "openai")[i % 4], "request_model": models[i % 4],
            "input_tokens": 1000 + i % 7000, "cache_read_tokens": i % 900, "output_tokens": 50 + i % 1500,
            "reasoning_tokens": i % 40, "session_id": f"s-{i % 5000}" if i % 5 else None,
            "latency_ms": 200 + i % 4000, "attributes": {"region": "eu"},
        }  # fmt: skip
        for i in range(n)
    ]


class Bench:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.admin = admin_client(settings)

    def topic(self) -> str:
        name = f"bench.{uuid.uuid4().hex[:10]}"
        create_topics(self.admin, {name: {"partitions": 4, "config": {"retention.ms": "600000"}}})
        return name

    def landed(self, topic: str) -> int:
        consumer = Consumer({"bootstrap.servers": self.settings.bootstrap_servers, "group.id": "bench"})
        total = sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(4)
        )
        consumer.close()
        return total

    def cleanup(self, topics: list[str]) -> None:
        if topics:
            self.admin.delete_topics(topics)


def report(label: str, n: int, seconds: float, cpu: float, landed: int) -> None:
    rate = n / seconds
    mark = "ok" if rate >= TARGET else "below target"
    lost = "" if landed == n else f"  LANDED {landed:,} of {n:,}!"
    print(f"  {label:<30} {rate:>9,.0f} events/s wall  {n / cpu:>9,.0f} events per CPU-second  "
          f"({n:,} in {seconds:5.2f}s, {cpu:5.2f} CPU-s; {mark}){lost}", flush=True)


def main() -> None:
    logging.getLogger(UsageProducer.__module__).setLevel(logging.ERROR)  # a fresh broker's "retrying" warnings
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    with bench_settings() as settings:
        run(settings, n)


def run(settings: Settings, n: int) -> None:
    work = settings.state_path
    bench, topics = Bench(settings), []
    try:
        print(f"producer benchmark: {n:,} usage events, broker {settings.bootstrap_servers}, {os.cpu_count()} cores")
        dicts = make_events(n)
        events = [UsageEvent.model_validate(d) for d in dicts]
        lines = [to_json_bytes(e) for e in events]
        print(f"  (average event {sum(map(len, lines)) / n:.0f} bytes of JSON)")
        # The harness holds every event three ways; a real producer holds none. Keep that heap out
        # of the garbage collector's scans so it does not slow the figures down.
        gc.freeze()

        # Warm the broker (JIT, idempotent producer id) so the first figure is not penalised.
        with UsageProducer(settings, events_topic=(warm := bench.topic())) as producer:
            for e in events[:20_000]:
                producer.send_usage(e)
        topics.append(warm)

        print("SDK (UsageProducer.send_usage):")
        for label, items in (("pre-built UsageEvent", events), ("dict (validated)", dicts), ("JSON bytes (validated)", lines)):
            topic = bench.topic()
            topics.append(topic)
            started, cpu = time.perf_counter(), cpu_seconds()
            with UsageProducer(settings, events_topic=topic) as producer:
                for item in items:
                    producer.send_usage(item)
            report(label, n, time.perf_counter() - started, cpu_seconds() - cpu, bench.landed(topic))
        print(f"  peak memory of this process: {peak_rss_mb():,.0f} MB (it holds the {n:,} events three ways)")

        print("CLI (yieldmeter produce FILE.jsonl, a subprocess):")
        path = work / "events.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        topic = bench.topic()
        topics.append(topic)
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
               "YIELDMETER_KAFKA_BOOTSTRAP": settings.bootstrap_servers, "YIELDMETER_STATE_DIR": str(work),
               "YIELDMETER_TOPIC_EVENTS": topic, "YIELDMETER_TOPIC_OUTCOMES": topic, "YIELDMETER_TOPIC_DLQ": topic}  # fmt: skip
        started, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
        result, peak = run_with_peak_rss([sys.executable, "-m", "yieldmeter", "produce", str(path)], env=env, cwd=work)
        wall, cpu = time.perf_counter() - started, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
        if result.returncode != 0:
            raise SystemExit(f"produce failed:\n{result.stdout}{result.stderr}")
        landed = bench.landed(topic)
        inner = float(re.search(r"([\d.]+)s, [\d,]+ events/s", result.stdout).group(1))
        report("produce (its own timing)", n, inner, cpu, landed)
        report("produce (wall, with start-up)", n, wall, cpu, landed)
        print(f"  {path.stat().st_size / 2**20:,.0f} MB file; peak memory of the produce process: {peak:,.0f} MB")

        print("Where the time goes (CPU microseconds per event):")
        breakdown(settings, bench, topics, events, lines)
    finally:
        bench.cleanup(topics)


def breakdown(settings: Settings, bench: Bench, topics: list[str], events: list, lines: list[bytes]) -> None:
    sample = min(len(lines), 100_000)
    validate, serialize = UsageEvent.__pydantic_validator__.validate_json, UsageEvent.__pydantic_serializer__.to_json

    def per_event(loop) -> float:
        started = cpu_seconds()
        loop()
        return (cpu_seconds() - started) / sample * 1e6

    def each(function, items) -> None:  # streaming, as the producer does: keep nothing
        for item in items[:sample]:
            function(item)

    validate_us = per_event(lambda: each(validate, lines))
    serialize_us = per_event(lambda: each(serialize, events))
    key_us = per_event(lambda: each(lambda e: session_key(e.org_id, e.user_id, e.app, e.session_id), events))

    topic = bench.topic()
    topics.append(topic)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, **DEFAULT_CONFIG})

    def produce() -> None:
        for i, line in enumerate(lines[:sample]):
            while True:
                try:
                    producer.produce(topic, line, "k")
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 1000 == 0:
                producer.poll(0)
        producer.flush()

    produce_us = per_event(produce)
    total = validate_us + serialize_us + key_us + produce_us
    print(f"  validate JSON {validate_us:.1f} + serialise {serialize_us:.1f} + key {key_us:.1f} + produce and "
          f"deliver (librdkafka, all threads) {produce_us:.1f} = {total:.1f} CPU-us per event "
          f"-> at most {1e6 / total:,.0f} validated events per CPU-second")


if __name__ == "__main__":
    main()
