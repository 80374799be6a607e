"""`yieldmeter demo`: the whole chain on this machine, from a fresh clone.

Today: start Kafka, create the topics, migrate the warehouse, run the smoke Flink job
end to end, stop what it started. It grows into the full pipeline as the jobs land.
"""

from __future__ import annotations

import json
import time
import uuid

from yieldmeter.cli.output import console, settings
from yieldmeter.flink import run_job
from yieldmeter.kafka_local import LocalKafka
from yieldmeter.topics import admin_client, create_topics, ensure_topics
from yieldmeter.warehouse import migrate, open_warehouse, redact

SMOKE_RECORDS = 1000


def demo() -> None:
    """Run the demo pipeline end to end and print what happened."""
    config = settings()
    started_broker = False
    broker = LocalKafka(config)
    t0 = time.monotonic()
    try:
        if config.uses_local_kafka and broker.pid() is None:
            with console.status("Starting Kafka…"):
                broker.start()
            started_broker = True
        console.print(f"[green]✓[/green] Kafka on {config.bootstrap_servers}")
        ensure_topics(config)
        console.print(f"[green]✓[/green] topics: {', '.join(config.topics.values())}")
        with open_warehouse(config.warehouse_url) as client:
            applied = migrate(client)
        console.print(f"[green]✓[/green] warehouse {redact(config.warehouse_url)}: {len(applied)} migration(s) applied")
        with console.status("Running the smoke Flink job…"):
            sent, received = _smoke(config)
        console.print(f"[green]✓[/green] smoke job: {sent} records in, {received} out (exactly once)")
    finally:
        if started_broker:
            broker.stop()
            console.print("[green]✓[/green] Kafka stopped")
    console.print(f"Demo finished in {time.monotonic() - t0:.0f}s.")


def _smoke(config) -> tuple[int, int]:
    from confluent_kafka import Consumer, Producer

    run = uuid.uuid4().hex[:8]
    source, sink = f"smoke.{run}.in", f"smoke.{run}.out"
    admin = admin_client(config)
    create_topics(admin, {source: {"partitions": 2}, sink: {"partitions": 2}})
    try:
        producer = Producer({"bootstrap.servers": config.bootstrap_servers, "enable.idempotence": True, "log_level": 3})
        for i in range(SMOKE_RECORDS):
            producer.produce(source, json.dumps({"n": i}).encode())
        producer.flush(30)
        run_job("smoke", config, timeout_s=300, source_topic=source, sink_topic=sink, group_id=f"smoke-{run}")
        consumer = Consumer({
            "bootstrap.servers": config.bootstrap_servers, "group.id": f"smoke-check-{run}",
            "auto.offset.reset": "earliest", "isolation.level": "read_committed", "enable.auto.commit": False,
        })
        consumer.subscribe([sink])
        received, idle_since = 0, time.monotonic()
        while received < SMOKE_RECORDS and time.monotonic() - idle_since < 10:
            batch = [m for m in consumer.consume(1000, 1.0) if not m.error()]
            if batch:
                received, idle_since = received + len(batch), time.monotonic()
        consumer.close()
        return SMOKE_RECORDS, received
    finally:
        admin.delete_topics([source, sink])
