"""Warehouse figures: rows/s from Kafka into ClickHouse, and rollup query latency at 10M calls.

    .venv/bin/python benchmarks/bench_warehouse.py [CALLS_THROUGH_KAFKA] [CALLS_IN_WAREHOUSE]
    (defaults 500000 and 10000000)

1. Ingest: CALLS_THROUGH_KAFKA priced-call records (as the pipeline job writes them) are put
   on a fresh usage.priced topic; WarehouseIngest then moves them into the embedded warehouse
   (JSON parsed by ClickHouse, metadata appended, offsets committed after each insert).
2. Queries: CALLS_IN_WAREHOUSE calls are generated inside ClickHouse (INSERT ... SELECT from
   numbers(), which also fills the hourly rollup through its materialized view), then the
   questions analysts and the alert rules ask are timed, each from the rollup and from the
   raw calls (median of 5 runs).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import bench_settings, peak_rss_mb  # noqa: E402

from yieldmeter.ingest import ROUTES, WarehouseIngest  # noqa: E402
from yieldmeter.topics import admin_client, create_topics  # noqa: E402
from yieldmeter.warehouse import migrate, open_warehouse  # noqa: E402

ROUTED = tuple(route.topic_key for route in ROUTES)  # every topic the ingest reads


def priced_json(i: int) -> bytes:
    org, team = f"org{i % 3}", f"team{i % 12}"
    return json.dumps({
        "schema_version": 1, "event_id": f"e-{i}", "occurred_at": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00.000Z",
        "org_id": org, "team": team, "user_id": f"u{i % 500}", "app": ("support-bot", "coding-agent")[i % 2],
        "feature": None, "provider": "openai", "request_model": "gpt-4o", "response_model": "gpt-4o-2024-08-06",
        "model": "gpt-4o", "operation": "chat", "input_tokens": 1200 + i % 900, "cache_read_tokens": i % 400,
        "cache_write_tokens": 0, "output_tokens": 300 + i % 200, "reasoning_tokens": 0, "service_tier": "default",
        "session_id": f"s-{i // 6}", "trace_id": None, "latency_ms": 900, "status": "ok", "error_type": None,
        "retry_of": None, "tool_calls": 0, "attributes": {}, "session_key": f"{org}/s-{i // 6}",
        "pricing_status": "priced", "price_id": "openai/gpt-4o/default@1970-01-01T00:00:00.000Z",
        "is_context_tier": False, "discount_id": None, "discount_pct": None,
        "cost_input_usd": "0.003000000000000", "cost_cache_read_usd": "0.000000000000000",
        "cost_cache_write_usd": "0.000000000000000", "cost_output_usd": "0.003000000000000",
        "cost_reasoning_usd": "0.000000000000000", "list_cost_usd": "0.006000000000000",
        "cost_usd": "0.006000000000000000000", "is_late": False, "source_topic": "usage.events",
        "source_partition": 0, "source_offset": i,
    }).encode()  # fmt: skip


def bench_ingest(n: int) -> None:
    with bench_settings() as base:
        names = {key: f"bench.{key}.{uuid.uuid4().hex[:6]}" for key in ROUTED}
        create_topics(admin_client(base), {name: {"partitions": 4} for name in names.values()})
        settings = base.model_copy(update={f"topic_{k}": v for k, v in names.items()})
        producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 50,
                             "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
        for i in range(n):
            producer.produce(names["priced"], priced_json(i), key=f"e-{i}")
            if i % 50_000 == 0:
                producer.poll(0)
        producer.flush(120)
        with tempfile.TemporaryDirectory() as folder, open_warehouse(f"chdb://{folder}/warehouse") as client:
            migrate(client)
            ingest = WarehouseIngest(settings, client)
            stats = ingest.run(until_caught_up=True, idle_timeout_s=5)
            ingest.close()
            stored = client.query("SELECT count() FROM calls").result_rows[0][0]
        print(f"ingest: {stats.records:,} records -> {stored:,} rows in {stats.seconds:.1f}s = "
              f"{stats.per_second:,.0f} rows/s ({stats.batches} batches of up to {settings.ingest_batch_size:,}); "
              f"peak RSS of this process {peak_rss_mb():,.0f} MB")


QUERIES = {
    "spend by team, one month": (
        "SELECT org_id, team, sum(cost_usd) FROM calls_hourly WHERE hour >= '2026-11-01' AND hour < '2026-12-01' GROUP BY org_id, team",
        "SELECT org_id, team, sum(cost_usd) FROM calls WHERE occurred_at >= '2026-11-01' AND occurred_at < '2026-12-01' GROUP BY org_id, team",
    ),
    "top models by cost": (
        "SELECT provider, model, sum(cost_usd) AS c FROM calls_hourly GROUP BY provider, model ORDER BY c DESC LIMIT 10",
        "SELECT provider, model, sum(cost_usd) AS c FROM calls GROUP BY provider, model ORDER BY c DESC LIMIT 10",
    ),
    "hourly spend of one app, last 7 days": (
        "SELECT hour, sum(cost_usd) FROM calls_hourly WHERE app = 'app3' AND hour >= '2026-11-21' GROUP BY hour ORDER BY hour",
        "SELECT toStartOfHour(occurred_at) h, sum(cost_usd) FROM calls WHERE app = 'app3' AND occurred_at >= '2026-11-21' GROUP BY h ORDER BY h",
    ),
}


def bench_queries(n: int) -> None:
    with tempfile.TemporaryDirectory() as folder, open_warehouse(f"chdb://{folder}/warehouse") as client:
        migrate(client)
        started = time.monotonic()
        client.command(f"""
            INSERT INTO calls (event_id, occurred_at, org_id, team, user_id, app, provider, request_model,
                response_model, model, operation, service_tier, input_tokens, cache_read_tokens, cache_write_tokens,
                output_tokens, reasoning_tokens, session_key, status, tool_calls, attributes, pricing_status,
                list_cost_usd, cost_usd, source_topic, source_partition, source_offset, schema_version,
                _topic, _partition, _offset, _timestamp)
            SELECT concat('e-', toString(number)), toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + number % (30 * 86400),
                concat('org', toString(number % 3)), concat('team', toString(number % 12)), concat('u', toString(number % 3000)),
                concat('app', toString(number % 8)), 'openai', 'gpt-4o', 'gpt-4o', ['gpt-4o', 'gpt-4o-mini', 'o3'][1 + number % 3],
                'chat', 'default', 1000 + number % 3000, number % 500, 0, 200 + number % 700, 0,
                concat('s-', toString(intDiv(number, 6))), if(number % 50 = 0, 'error', 'ok'), 0, map(), 'priced',
                toDecimal128(0.004, 15), toDecimal128(0.004, 21), 'usage.events', 0, number, 1,
                'usage.priced', 0, number, now64(3)
            FROM numbers({n})""", settings={"max_insert_threads": 2})
        loaded = time.monotonic() - started
        rows = client.query("SELECT count() FROM calls").result_rows[0][0]
        hourly = client.query("SELECT count() FROM calls_hourly").result_rows[0][0]
        print(f"queries: {rows:,} calls generated in {loaded:.1f}s ({hourly:,} hourly rollup rows before merges)")
        for label, (rollup, raw) in QUERIES.items():
            figures = []
            for sql in (rollup, raw):
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    client.query(sql)
                    times.append(time.perf_counter() - t)
                figures.append(statistics.median(times) * 1000)
            print(f"  {label:40s} rollup {figures[0]:7.1f} ms   raw calls {figures[1]:7.1f} ms")
        print(f"  peak RSS of this process {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    through_kafka = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    in_warehouse = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
    bench_ingest(through_kafka)
    bench_queries(in_warehouse)
