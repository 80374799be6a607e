"""The pipeline job on the real broker and a real Flink mini-cluster.

One bounded run covers the scenarios (Flink start-up dominates a run): prices with cached,
reasoning and context-tier tokens, a service tier and its fallback, org discounts, a price
change in the middle of the stream, an unknown model; sessions of interleaved users and of an
explicit session id; out-of-order and late calls; dead letters; duplicates. Expected values
come from the Python references (PriceRecord.cost_usd, OrgDiscount.apply, parse_usage), so
the SQL must agree with them to the last decimal. A second run checks that a bounded run
resumes after what the first one committed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, Producer

from yieldmeter.contracts import PriceRecord, UsageEvent, parse_usage, to_json_bytes
from yieldmeter.normalize import normalize_model
from yieldmeter.pipeline_jobs import run_pipeline
from yieldmeter.prices import OrgDiscount, discount_for

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PRICE_CHANGE = T0 + timedelta(minutes=20)
GAP = timedelta(minutes=10)
JOB_OPTIONS = {"session_gap": "10min", "out_of_orderness": "1min", "watermark_emit": "on-event", "parallelism": 1}


def wire(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- Kafka helpers -------------------------------------------------------------------------------


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]], partition: int = -1) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, value, key=key, partition=partition)
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, timeout_s: float = 30) -> list[dict]:
    """Every committed record of ``topic`` (read_committed, to the end of each partition)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"check-{topic}-{time.monotonic_ns()}",
        "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        "enable.auto.commit": False, "enable.partition.eof": True,
    })
    partitions = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer.subscribe([topic])
    rows, done, deadline = [], set(), time.monotonic() + timeout_s
    while len(done) < partitions and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            if message.error():
                if message.error().code() == -191:  # _PARTITION_EOF
                    done.add(message.partition())
                    continue
                raise AssertionError(message.error())
            rows.append(json.loads(message.value()))
    consumer.close()
    assert len(done) == partitions, f"{topic}: did not reach the end of every partition"
    return rows


# --- the catalog ---------------------------------------------------------------------------------

OPENAI_4O = normalize_model("openai", "gpt-4o-2024-08-06")
SONNET = normalize_model("anthropic", "claude-sonnet-4-5-20250929")
O3 = normalize_model("openai", "o3-2025-04-16")

PRICES = [
    # gpt-4o: cache reads have their own rate, cache writes fall back to the input rate.
    PriceRecord(provider="openai", model=OPENAI_4O, effective_from="1970-01-01T00:00:00Z",
                input_per_mtok="2.5", output_per_mtok="10", cache_read_per_mtok="1.25", source="user"),
    # ... and it changes in the middle of the stream.
    PriceRecord(provider="openai", model=OPENAI_4O, effective_from=wire(PRICE_CHANGE),
                input_per_mtok="2.0", output_per_mtok="8.000000001", cache_read_per_mtok="1", source="user"),
    PriceRecord(provider="openai", model=OPENAI_4O, service_tier="batch", effective_from="1970-01-01T00:00:00Z",
                input_per_mtok="1.25", output_per_mtok="5", source="user"),
    # Sonnet: cache read/write rates and a context tier above 200k input tokens.
    PriceRecord(provider="anthropic", model=SONNET, effective_from="2025-09-29T00:00:00Z",
                input_per_mtok="3", output_per_mtok="15", cache_read_per_mtok="0.3", cache_write_per_mtok="3.75",
                tier_threshold_input_tokens=200_000, input_above_per_mtok="6", output_above_per_mtok="22.5",
                cache_read_above_per_mtok="0.6", cache_write_above_per_mtok="7.5", source="genai-prices"),
    # o3: reasoning tokens have their own rate.
    PriceRecord(provider="openai", model=O3, effective_from="2025-04-16T00:00:00Z", input_per_mtok="2",
                output_per_mtok="8", cache_read_per_mtok="0.5", reasoning_per_mtok="9.123456789", source="user"),
]
DISCOUNTS = [
    OrgDiscount(org_id="globex", provider="openai", discount_pct="12.5", effective_from="2026-01-01T00:00:00Z"),
    OrgDiscount(org_id="globex", discount_pct="5", effective_from="2026-01-01T00:00:00Z"),
    # Takes effect after the stream: never applies.
    OrgDiscount(org_id="globex", discount_pct="50", effective_from="2027-01-01T00:00:00Z"),
]


def catalog_records() -> list[tuple[bytes, bytes]]:
    prices = [(p.price_id.encode(), to_json_bytes(p)) for p in PRICES]
    discounts = [(d.discount_id.encode(), to_json_bytes(d)) for d in DISCOUNTS]
    # Not in effective_from order, as on the real (key-sorted) topic; plus a record the job
    # cannot use, and a tombstone.
    return [prices[1], *discounts, prices[0], prices[2], (b"broken", b"{"), prices[3], prices[4], (b"gone", None)]


def price_for(event: UsageEvent) -> PriceRecord | None:
    model = normalize_model(event.provider, event.response_model)
    for tier in (event.service_tier, "default"):
        versions = [p for p in PRICES if (p.provider, p.model, p.service_tier) == (event.provider, model, tier)
                    and p.effective_from <= event.occurred_at]
        if versions:
            return max(versions, key=lambda p: p.effective_from)
    return None


def expected_cost(event: UsageEvent) -> tuple[PriceRecord | None, Decimal | None, OrgDiscount | None]:
    price = price_for(event)
    if price is None:
        return None, None, None
    discount = discount_for(DISCOUNTS, event.org_id, event.provider, event.occurred_at)
    cost = price.cost_usd(event)
    return price, (discount.apply(cost) if discount else cost), discount


# --- the events ----------------------------------------------------------------------------------


def call(event_id: str, minutes: float, user: str = "u1", **fields) -> UsageEvent:
    values = {
        "event_id": event_id, "occurred_at": T0 + timedelta(minutes=minutes), "org_id": "acme", "team": "support",
        "user_id": user, "app": "helpdesk", "provider": "openai", "request_model": "gpt-4o",
        "response_model": "gpt-4o-2024-08-06", "input_tokens": 1200, "cache_read_tokens": 1000,
        "output_tokens": 300,
    } | fields
    return UsageEvent(**values)


VALID = [
    call("a1", 0),
    call("b1", 1, user="u2", request_model="o3", response_model="o3-2025-04-16", output_tokens=5000,
         reasoning_tokens=4000, cache_read_tokens=0),
    call("a2", 2, status="error", error_type="RateLimitError", input_tokens=0, cache_read_tokens=0, output_tokens=0),
    call("b2", 3, user="u2", service_tier="batch", cache_read_tokens=0),  # the batch price
    call("b3", 2.5, user="u2", retry_of="b1"),  # out of order, within the bound: joins its session
    call("a3", 4, retry_of="a2", cache_write_tokens=150),  # cache write at the input rate
    call("v1", 4.5, provider="vllm", request_model="acme-internal-llm-v1", response_model=None),  # unpriced
    call("s1", 5, user="u3", app="ide", session_id="conv-9"),
    call("s2", 6, user="u4", app="ide", session_id="conv-9", status="cancelled"),  # same session, other user
    call("g1", 7, user="u5", org_id="globex"),  # 12.5% discount on openai
    call("g2", 8, user="u5", org_id="globex", provider="anthropic", request_model="claude-sonnet-4-5",
         response_model="claude-sonnet-4-5-20250929", input_tokens=250_000, cache_read_tokens=200_000,
         cache_write_tokens=10_000, output_tokens=2_000),  # above the context tier; 5% discount
    call("g3", 9, user="u5", org_id="globex", provider="anthropic", request_model="claude-sonnet-4-5",
         response_model="claude-sonnet-4-5-20250929", input_tokens=150_000, cache_read_tokens=100_000,
         output_tokens=1_000, service_tier="flex"),  # below the tier; flex falls back to default
    call("b4", 12, user="u2", request_model="o3", response_model="o3-2025-04-16", service_tier="batch",
         output_tokens=900, reasoning_tokens=800, cache_read_tokens=0),  # o3 has no batch price: default
    call("a4", 25, cache_read_tokens=0),  # after the price change, and a new session (gap > 10 min)
    call("a5", 1.5),  # late: 23.5 min behind the newest call, the bound is 1 min -> a correction
    call("a6", 26, tool_calls=3, attributes={"region": "eu"}),
]
OTEL = {  # valid, with OpenTelemetry attribute names
    "event_id": "o1", "occurred_at": wire(T0 + timedelta(minutes=27)), "org_id": "acme", "team": "support",
    "user.id": "u1", "app": "helpdesk", "gen_ai.provider.name": "OpenAI", "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10,
}
BASE = json.loads(to_json_bytes(call("x", 0)))  # at T0: a dead letter's time must not move the watermark
INVALID: dict[bytes | None, str] = {
    b"not json": "(event): not valid JSON",
    b"[1, 2]": "(event): Input should be an object",
    b"": "(event): not valid JSON",
    None: "(event): empty record",
    json.dumps({k: v for k, v in BASE.items() if k != "event_id"}).encode(): "event_id: required field is missing",
    json.dumps(BASE | {"event_id": "x2", "input_tokens": "12"}).encode(): "input_tokens: Input should be a valid integer",
    json.dumps(BASE | {"event_id": "x3", "input_tokens": 12.0}).encode(): "input_tokens: Input should be a valid integer",
    json.dumps(BASE | {"event_id": "x4", "cache_read_tokens": 5000}).encode(): "cache_read_tokens + cache_write_tokens",
    json.dumps(BASE | {"event_id": "x5", "colour": "red"}).encode(): "colour: unknown field",
    json.dumps(BASE | {"event_id": "x6", "occurred_at": "2099-01-01T00:00:00Z"}).encode(): "more than 5 minutes in the future",
    json.dumps(BASE | {"event_id": "x7", "occurred_at": "2026-11-02T09:30:00"}).encode(): "must carry a UTC offset",
    json.dumps(BASE | {"event_id": "x8", "status": "OK"}).encode(): "status: Input should be 'ok', 'error' or 'cancelled'",
    json.dumps(BASE | {"event_id": "x9", "org_id": "   "}).encode(): "org_id: String should match pattern",
    json.dumps(BASE | {"event_id": "x10", "attributes": {"n": 1}}).encode(): "attributes.n: Input should be a valid string",
    json.dumps(BASE | {"event_id": "x11", "provider": "open ai"}).encode(): "provider: String should match pattern",
    json.dumps(BASE | {"event_id": "x12", "reasoning_tokens": 301}).encode(): "reasoning_tokens (301) must not exceed",
}


def event_records() -> list[tuple[bytes | None, bytes | None]]:
    """The stream in offset order (one partition): valid calls, dead letters and re-deliveries."""
    valid = [(e.event_id.encode(), to_json_bytes(e)) for e in VALID]
    invalid = [(None, payload) for payload in INVALID]
    duplicates = [valid[0], valid[3]]
    otel = (b"o1", json.dumps(OTEL).encode())
    return valid[:5] + invalid[:8] + valid[5:13] + duplicates + invalid[8:] + valid[13:] + [otel, valid[6]]


def expected_sessions(events: list[UsageEvent]) -> dict[str, list[UsageEvent]]:
    """On-time calls split into sessions: same key, gaps shorter than GAP. Key -> start -> calls."""
    by_key = defaultdict(list)
    for event in sorted(events, key=lambda e: e.occurred_at):
        key = ("session", event.org_id, event.session_id) if event.session_id else ("user", event.org_id, event.user_id, event.app)
        by_key[key].append(event)
    sessions = {}
    for key, calls in by_key.items():
        current = [calls[0]]
        for event in calls[1:]:
            if event.occurred_at - current[-1].occurred_at >= GAP:
                sessions[(key, current[0].occurred_at)] = current
                current = []
            current.append(event)
        sessions[(key, current[0].occurred_at)] = current
    return sessions


# --- the test --------------------------------------------------------------------------------------


def test_pipeline_prices_sessionizes_and_dead_letters(settings, new_topics):
    # One partition: one order, so which call is late is decided. (With an empty partition
    # the watermark would wait for its idle timeout, and the calls read meanwhile are on time.)
    events, prices, priced, sessions, dlq = new_topics(5)
    topics = {"events_topic": events, "prices_topic": prices, "priced_topic": priced,
              "sessions_topic": sessions, "dlq_topic": dlq}
    produce(settings.bootstrap_servers, prices, catalog_records())
    records = event_records()
    produce(settings.bootstrap_servers, events, records)

    run_pipeline(settings, timeout_s=300, group_id=f"g-{events}", **topics, **JOB_OPTIONS)

    out = {row["event_id"]: row for row in read_all(settings.bootstrap_servers, priced)}
    dead = read_all(settings.bootstrap_servers, dlq)
    closed = read_all(settings.bootstrap_servers, sessions)

    # Every record is valid or a dead letter; each valid call comes out once.
    valid = VALID + [parse_usage(json.dumps(OTEL))]
    assert len(records) == len(valid) + len(INVALID) + 3  # 3 re-deliveries
    assert sorted(out) == sorted(e.event_id for e in valid)
    assert len(read_all(settings.bootstrap_servers, priced)) == len(valid)  # no duplicate rows

    # Dead letters: the original payload, the reason naming the field, the record's position.
    assert len(dead) == len(INVALID)
    assert {(d["source_topic"], d["source_partition"]) for d in dead} == {(events, 0)}
    offsets = {i for i, (_, value) in enumerate(records) if value in INVALID or value is None}
    assert {d["source_offset"] for d in dead} == offsets
    for letter in dead:
        value = records[letter["source_offset"]][1]
        assert INVALID[value] in letter["reason"], letter
        assert letter["payload"] == (value or b"").decode()
        assert letter["rejected_at"].endswith("Z")

    # a5 arrives 23.5 minutes after its time-neighbours (the bound is 1 min): the only late call.
    late = {"a5"}
    for event in valid:
        row = out[event.event_id]
        assert row["occurred_at"] == wire(event.occurred_at)
        assert (row["org_id"], row["user_id"], row["provider"]) == (event.org_id, event.user_id, event.provider)
        assert row["response_model"] == event.response_model
        assert row["model"] == normalize_model(event.provider, event.response_model)
        assert row["attributes"] == event.attributes
        assert row["is_late"] == (event.event_id in late)
        price, cost, discount = expected_cost(event)
        if price is None:
            assert row["pricing_status"] == "unpriced", row
            assert row["price_id"] is None and row["cost_usd"] is None and row["list_cost_usd"] is None
            continue
        assert row["pricing_status"] == "priced", row
        assert row["price_id"] == price.price_id
        rates = price.rates_for(event.input_tokens)
        assert row["is_context_tier"] == (rates.input != price.input_per_mtok)
        million = Decimal(1_000_000)
        assert Decimal(row["cost_input_usd"]) == event.uncached_input_tokens * rates.input / million
        assert Decimal(row["cost_cache_read_usd"]) == event.cache_read_tokens * rates.cache_read / million
        assert Decimal(row["cost_cache_write_usd"]) == event.cache_write_tokens * rates.cache_write / million
        assert Decimal(row["cost_output_usd"]) == (event.output_tokens - event.reasoning_tokens) * rates.output / million
        assert Decimal(row["cost_reasoning_usd"]) == event.reasoning_tokens * rates.reasoning / million
        assert Decimal(row["list_cost_usd"]) == price.cost_usd(event)
        assert Decimal(row["cost_usd"]) == cost, row
        assert row["discount_id"] == (discount.discount_id if discount else None)

    # The scenarios the catalog was built for really happened.
    assert out["a4"]["price_id"].endswith(wire(PRICE_CHANGE)) and out["a1"]["price_id"].endswith("1970-01-01T00:00:00.000Z")
    assert "/batch@" in out["b2"]["price_id"] and "/default@" in out["b4"]["price_id"]
    assert out["g2"]["is_context_tier"] and not out["g3"]["is_context_tier"]
    assert Decimal(out["g1"]["discount_pct"]) == Decimal("12.5") and Decimal(out["g2"]["discount_pct"]) == 5
    assert Decimal(out["b1"]["cost_reasoning_usd"]) == 4000 * Decimal("9.123456789") / 1_000_000

    # Sessions: on-time calls in windows, the late call as a correction; nothing counted twice.
    on_time = [e for e in valid if e.event_id not in late]
    want = expected_sessions(on_time)
    windows = [s for s in closed if not s["is_correction"]]
    corrections = [s for s in closed if s["is_correction"]]
    assert len(windows) == len(want)
    assert sum(s["calls"] for s in closed) == len(valid)
    by_start = {(s["session_key"], s["started_at"]): s for s in windows}
    for (_, start), calls in want.items():
        session = by_start[(out[calls[0].event_id]["session_key"], wire(start))]
        assert session["ended_at"] == wire(calls[-1].occurred_at)
        assert session["calls"] == len(calls)
        assert session["errors"] == sum(c.status == "error" for c in calls)
        assert session["cancelled"] == sum(c.status == "cancelled" for c in calls)
        assert session["retries"] == sum(c.retry_of is not None for c in calls)
        assert session["input_tokens"] == sum(c.input_tokens for c in calls)
        assert session["cache_read_tokens"] == sum(c.cache_read_tokens for c in calls)
        assert session["reasoning_tokens"] == sum(c.reasoning_tokens for c in calls)
        assert session["tool_calls"] == sum(c.tool_calls for c in calls)
        assert session["max_input_tokens"] == max(c.input_tokens for c in calls)
        assert session["models_used"] == sorted({normalize_model(c.provider, c.response_model) for c in calls})
        costs = [expected_cost(c)[1] for c in calls]
        assert session["unpriced_calls"] == sum(c is None for c in costs)
        priced_costs = [c for c in costs if c is not None]
        assert (Decimal(session["cost_usd"]) if session["cost_usd"] else None) == (sum(priced_costs) if priced_costs else None)
        assert session["session_id"] == calls[0].session_id
        assert session["user_id"] == min(c.user_id for c in calls)
    assert [c["session_uid"] for c in corrections] == [hashlib.md5(b"late|a5").hexdigest()]
    assert corrections[0]["started_at"] == wire(T0 + timedelta(minutes=1.5)) and corrections[0]["calls"] == 1
    assert len({s["session_uid"] for s in closed}) == len(closed)
    conv = [s for s in windows if s["session_id"] == "conv-9"]
    assert len(conv) == 1 and conv[0]["calls"] == 2 and conv[0]["user_id"] == "u3"

    # A second bounded run resumes after the first: only the new calls come out.
    more = [call("n1", 60), call("n2", 61, user="u2")]
    produce(settings.bootstrap_servers, events, [(e.event_id.encode(), to_json_bytes(e)) for e in more])
    run_pipeline(settings, timeout_s=300, group_id=f"g-{events}", **topics, **JOB_OPTIONS)
    again = read_all(settings.bootstrap_servers, priced)
    assert sorted(r["event_id"] for r in again) == sorted([*out, "n1", "n2"])
    assert len(read_all(settings.bootstrap_servers, dlq)) == len(INVALID)
    assert sum(s["calls"] for s in read_all(settings.bootstrap_servers, sessions)) == len(valid) + 2
