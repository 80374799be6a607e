"""Pricing and sessions do not depend on arrival order.

One workload of five weeks — across a real price change (claude-opus-4-6, 2026-03-13), in and
out of DeepSeek's off-peak window, with providers spelled as gateways spell them — is sent
two ways: shuffled across the weeks with no key (the producer spreads the records over the
partitions as it likes); in reverse time order, keyed (every call late against the one before
it). Each goes through the real chain (broker, the Flink pipeline job, the warehouse ingest,
dbt) on topics and a warehouse of its own. Every call must get the same cost in both — the cost
the Python reference gives (docs/pricing.md), whatever the order — and dbt's merged sessions
must be identical. (Time order is what every other pipeline test sends.)
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from tests.conftest import make_settings
from tests.e2e.workload import _ingest, fresh_topic_settings
from yieldmeter.contracts import UsageEvent, to_json_bytes
from yieldmeter.normalize import normalize_model, normalize_provider
from yieldmeter.pipeline_jobs import run_pipeline
from yieldmeter.prices import build_catalog, price_for, publish
from yieldmeter.topics import ensure_topics
from yieldmeter.transform import transform
from yieldmeter.warehouse import open_warehouse

pytestmark = pytest.mark.e2e

START = datetime(2026, 2, 20, tzinfo=UTC)
MODELS = [  # (provider as sent, model as sent)
    ("anthropic", "claude-opus-4-6"), ("anthropic", "claude-opus-4-6"), ("google", "gemini-2.5-pro"),
    ("vertex_ai", "gemini-2.5-flash"), ("gemini", "models/gemini-2.5-flash"), ("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ("deepseek", "deepseek-chat"), ("xai", "grok-3"), ("azure", "gpt-4o"), ("openai", "gpt-4o-2024-08-06"),
    ("mistral", "mistral-large-latest"), ("openai", "acme-internal-model"),
]  # fmt: skip


def workload(seed: int = 11) -> list[UsageEvent]:
    rng = random.Random(seed)
    calls = []
    for s in range(160):
        at = START + timedelta(minutes=rng.randrange(35 * 24 * 60))
        user, explicit = f"u{rng.randrange(25)}", rng.random() < 0.5
        for k in range(rng.randint(1, 10)):
            provider, model = rng.choice(MODELS)
            inp = rng.randint(100, 60_000)
            read = rng.randint(0, inp // 2)
            out = rng.randint(10, 4_000)
            calls.append(UsageEvent(
                event_id=f"call-{s}-{k}", occurred_at=at, org_id="acme", team=f"t{rng.randrange(3)}", user_id=user,
                app="support-bot", provider=provider, request_model=model, input_tokens=inp, cache_read_tokens=read,
                output_tokens=out, reasoning_tokens=rng.randint(0, out // 3), session_id=f"s{s}" if explicit else None,
            ))
            at += timedelta(seconds=rng.randint(3, 900))
    return sorted(calls, key=lambda c: (c.occurred_at, c.event_id))


def send(bootstrap: str, topic: str, events: list[UsageEvent], keyed: bool) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 0})
    for event in events:
        producer.produce(topic, to_json_bytes(event), key=event.event_id.encode() if keyed else None)
        producer.poll(0)
    assert producer.flush(60) == 0


def through_the_chain(kafka, tmp_path, catalog, events: list[UsageEvent], keyed: bool):
    settings = fresh_topic_settings(make_settings(tmp_path, kafka_bootstrap=kafka.bootstrap_servers, flink_parallelism=2))
    ensure_topics(settings)
    publish(catalog, settings)
    send(settings.bootstrap_servers, settings.topic_events, events, keyed)
    run_pipeline(settings, timeout_s=900, group_id=f"pipeline-{settings.topic_events}")
    _ingest(settings)
    run = transform(settings, ["run", "--select", "+fct_calls", "+fct_sessions"])
    assert run.success, run.counts()
    with open_warehouse(settings.warehouse_url) as client:
        calls = {r[0]: r[1:] for r in client.query(
            "SELECT event_id, provider, provider_raw, model, pricing_status, price_id, toString(list_cost_usd), "
            "toString(cost_usd) FROM fct_calls").result_rows}
        sessions = sorted(client.query(
            "SELECT session_key, started_at, ended_at, calls, input_tokens, output_tokens, toString(list_cost_usd) "
            "FROM fct_sessions").result_rows)
    return calls, sessions


def test_costs_and_sessions_do_not_depend_on_arrival_order(kafka, tmp_path):
    events = workload()
    catalog = build_catalog()
    shuffled = events[:]
    random.Random(5).shuffle(shuffled)
    runs = {
        "shuffled, no key": through_the_chain(kafka, tmp_path / "a", catalog, shuffled, keyed=False),
        "reverse order, keyed": through_the_chain(kafka, tmp_path / "b", catalog, events[::-1], keyed=True),
    }
    (calls, sessions), *others = runs.values()
    assert len(calls) == len(events)
    for name, (other_calls, other_sessions) in list(runs.items())[1:]:
        assert other_calls == calls, name
        assert other_sessions == sessions, name
    assert sum(s[3] for s in sessions) == len(events)

    # ... and the cost is the reference's (docs/pricing.md), late or not.
    by_model = defaultdict(list)
    for record in catalog.prices.values():
        by_model[(record.provider, record.model)].append(record)
    price_ids = defaultdict(set)
    for event in events:
        provider = normalize_provider(event.provider)
        model = normalize_model(provider, event.response_model)
        record = price_for(by_model[(provider, model)], provider, model, event.service_tier, event.occurred_at)
        got = calls[event.event_id]
        assert got[:3] == (provider, event.provider, model), event
        if record is None:
            assert got[3:5] == ("unpriced", ""), event  # kept and marked
        else:
            assert got[3] == "priced" and got[4] == record.price_id
            assert Decimal(got[5]) == record.cost_usd(event), event
            price_ids[model].add(record.price_id)
    assert len(price_ids["claude-opus-4-6"]) == 2  # both sides of the 2026-03-13 price change
    assert any("/16:30:00-00:30:00@" in p for p in price_ids["deepseek-chat"])  # off-peak calls


def test_a_price_and_a_backdated_discount_published_after_their_calls_reprice_them(kafka, tmp_path):
    """Through the real chain: the stream prices calls with the catalog it has; a price for a
    model it did not know, and a discount back-dated to before the calls, are published after
    them; after the next ingest and dbt build those calls carry the new cost, and the repricing
    audit says why and when."""
    from yieldmeter.contracts import OrgDiscount, PriceRecord
    from yieldmeter.prices import Catalog

    events = [e for e in workload(seed=3) if e.provider in ("openai", "anthropic")]
    catalog = build_catalog()
    settings = fresh_topic_settings(make_settings(tmp_path, kafka_bootstrap=kafka.bootstrap_servers))
    ensure_topics(settings)
    publish(catalog, settings)
    send(settings.bootstrap_servers, settings.topic_events, events, keyed=True)
    run_pipeline(settings, timeout_s=900, group_id=f"pipeline-{settings.topic_events}")
    _ingest(settings)

    new_price = PriceRecord(provider="openai", model="acme-internal-model", effective_from="2026-01-01T00:00:00Z",
                            input_per_mtok="0.5", output_per_mtok="1.5", source="user")
    discount = OrgDiscount(org_id="acme", provider="anthropic", discount_pct="20", effective_from="2026-01-01T00:00:00Z")
    publish(Catalog(prices={new_price.price_id: new_price}, discounts={discount.discount_id: discount}), settings)
    _ingest(settings)
    run = transform(settings, ["run", "--select", "+fct_calls", "+repricing_audit"])
    assert run.success, run.counts()

    with open_warehouse(settings.warehouse_url) as client:
        stream = dict(client.query("SELECT event_id, pricing_status FROM calls FINAL").result_rows)
        calls = {r[0]: r[1:] for r in client.query(
            "SELECT event_id, pricing_status, price_id, cost_usd FROM fct_calls").result_rows}
        audit = {r[0]: r[1] for r in client.query("SELECT event_id, reasons FROM repricing_audit").result_rows}
    by_model = defaultdict(list)
    for record in [*catalog.prices.values(), new_price]:
        by_model[(record.provider, record.model)].append(record)
    internal = anthropic = 0
    for event in events:
        provider = normalize_provider(event.provider)
        model = normalize_model(provider, event.response_model)
        record = price_for(by_model[(provider, model)], provider, model, event.service_tier, event.occurred_at)
        status, price_id, cost = calls[event.event_id]
        list_cost = record.cost_usd(event)
        if model == "acme-internal-model":
            internal += 1
            assert stream[event.event_id] == "unpriced"  # the stream did not know the price yet
            assert (status, price_id, cost, audit[event.event_id]) == ("repriced", new_price.price_id, list_cost, ["newly_priced"])
        elif provider == "anthropic":
            anthropic += 1
            assert stream[event.event_id] == "priced"
            assert (status, cost, audit[event.event_id]) == ("repriced", discount.apply(list_cost), ["discount_backdated"])
        else:
            assert (status, cost) == ("priced", list_cost) and event.event_id not in audit
    assert internal > 5 and anthropic > 5
