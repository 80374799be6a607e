"""Kafka -> warehouse ingest on the real broker and the real ClickHouse engine."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from tests.conftest import make_settings
from yieldmeter.contracts import OutcomeEvent, PriceRecord, to_json_bytes
from yieldmeter.ingest import ROUTES, WarehouseIngest
from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration

ROUTED = tuple(route.topic_key for route in ROUTES)  # every topic the ingest reads


@pytest.fixture
def topics_settings(kafka, tmp_path, new_topics):
    names = new_topics(len(ROUTED), partitions=2)
    return make_settings(tmp_path / "state", kafka_bootstrap=kafka.bootstrap_servers,
                         **{f"topic_{key}": name for key, name in zip(ROUTED, names)})


def outcome(i: int) -> bytes:
    return to_json_bytes(OutcomeEvent(
        outcome_id=f"o-{i}", occurred_at=datetime(2026, 11, 2, 10, i % 60, tzinfo=UTC), org_id="acme",
        team="support", user_id=f"u{i % 5}", app="support-bot", session_id=f"s-{i}",
        outcome_type="ticket_resolved", success=i % 3 != 0, value_usd=Decimal("12.50") if i % 2 else None,
    ))  # fmt: skip


def ingest_all(settings, url, group="yieldmeter-warehouse"):
    with open_warehouse(url) as client:
        migrate(client)
        ingest = WarehouseIngest(settings, client, group_id=group, batch_size=100)
        try:
            stats = ingest.run(until_caught_up=True, idle_timeout_s=5)
        finally:
            ingest.close()
        counts = {t: client.query(f"SELECT count() FROM {t}").result_rows[0][0]
                  for t in ("outcomes", "prices", "dead_letters")}
        return stats, counts, client.query("SELECT reason, source_topic FROM dead_letters ORDER BY source_offset").result_rows


def test_outcomes_prices_and_dead_letters_land_once(topics_settings, warehouse_url):
    s = topics_settings
    producer = Producer({"bootstrap.servers": s.bootstrap_servers})
    for i in range(300):
        producer.produce(s.topic_outcomes, outcome(i), key=f"acme/s-{i}")
    producer.produce(s.topic_outcomes, b"{not json", key=b"bad-1")
    producer.produce(s.topic_outcomes, json.dumps({"outcome_id": "o-x", "success": "maybe"}).encode(), key=b"bad-2")
    price = PriceRecord(provider="openai", model="gpt-4o", effective_from=datetime(2024, 1, 1, tzinfo=UTC),
                        input_per_mtok=Decimal("2.5"), output_per_mtok=Decimal("10"), source="user")
    producer.produce(s.topic_prices, to_json_bytes(price), key=price.price_id)
    producer.produce(s.topic_dlq, json.dumps({
        "source_topic": "usage.events", "source_partition": 0, "source_offset": 7,
        "rejected_at": "2026-11-02T10:00:00.000Z", "reason": "input_tokens: must be >= 0", "payload": "{}",
    }).encode())
    assert producer.flush(30) == 0

    stats, counts, letters = ingest_all(s, warehouse_url)
    assert counts == {"outcomes": 300, "prices": 1, "dead_letters": 3}
    assert stats.records == 304
    reasons = " | ".join(r for r, _ in letters)
    assert "input_tokens: must be >= 0" in reasons and "occurred_at" in reasons and "JSON" in reasons

    # A new consumer group re-reads everything from the start: nothing is stored twice.
    again, counts_again, _ = ingest_all(s, warehouse_url, group="another-group")
    assert counts_again == counts
    assert again.skipped_redelivered == 304

    with open_warehouse(warehouse_url) as client:
        total = client.query("SELECT sum(value_usd), countIf(success) FROM outcomes").result_rows[0]
        assert total == (Decimal("12.50") * 150, 200)
        offsets = client.query("SELECT count(DISTINCT (_partition, _offset)) FROM outcomes").result_rows[0][0]
        assert offsets == 300


def test_budgets_and_controls_land_as_their_latest_state(topics_settings, warehouse_url):
    """Budgets: the latest record per budget_id, a tombstone deletes, a record that breaks the
    contract (or sits under another budget's key) is a dead letter. Controls: the latest."""
    from yieldmeter.budgets import Budget

    s = topics_settings
    producer = Producer({"bootstrap.servers": s.bootstrap_servers})
    first = Budget(org_id="acme", team="support", limit_usd=Decimal("100"), action="block")
    raised = first.model_copy(update={"limit_usd": Decimal("250.123456789")})
    gone = Budget(org_id="globex", limit_usd=Decimal("5"))
    for budget in (first, gone, raised):
        producer.produce(s.topic_budgets, to_json_bytes(budget), key=budget.budget_id)
    producer.produce(s.topic_budgets, None, key=gone.budget_id)  # deleted
    producer.produce(s.topic_budgets, json.dumps({"org_id": "acme", "limit_usd": "-1"}).encode(), key=b"spend/acme/month")
    producer.produce(s.topic_budgets, to_json_bytes(gone), key=b"spend/someone-else/month")
    control = {
        "budget_id": first.budget_id, "schema_version": 1, "org_id": "acme", "team": "support", "user_id": None,
        "app": None, "api_key": None, "period": "month", "time_zone": "UTC",
        "period_start": "2026-11-01T00:00:00.000Z", "period_end": "2026-12-01T00:00:00.000Z", "action": "block",
        "limit_usd": "100.000000000", "warn_at_pct": "80.0000", "throttle_per_minute": None, "unpriced_calls": 0,
        "reason": "...", "updated_at": "2026-11-20T10:00:00.000Z",
    }
    for spent, state, calls in (("99.5", "warn", 10), ("100.250000000000000000001", "block", 11)):
        record = control | {"state": state, "spent_usd": spent, "calls": calls,
                            "remaining_usd": str(Decimal("100") - Decimal(spent))}
        producer.produce(s.topic_controls, json.dumps(record).encode(), key=first.budget_id)
    producer.flush(10)

    with open_warehouse(warehouse_url) as client:
        migrate(client)
        ingest = WarehouseIngest(s, client, batch_size=100)
        try:
            ingest.run(until_caught_up=True, idle_timeout_s=5)
        finally:
            ingest.close()
        budgets = client.query("SELECT budget_id, team, limit_usd, action FROM budgets FINAL").result_rows
        controls = client.query("SELECT budget_id, state, spent_usd, calls FROM controls FINAL").result_rows
        reasons = [r for (r,) in client.query(
            "SELECT reason FROM dead_letters WHERE source_topic = {t:String} ORDER BY source_offset",
            parameters={"t": s.topic_budgets}).result_rows]
    assert budgets == [(first.budget_id, "support", Decimal("250.123456789"), "block")]
    assert controls == [(first.budget_id, "block", Decimal("100.250000000000000000001"), 11)]
    assert sorted(reasons) == ["budgets: the key must be the budget's id 'spend/globex/month' "
                               "(got b'spend/someone-else/month')",
                               "limit_usd: Input should be greater than or equal to 0 (got '-1')"]
