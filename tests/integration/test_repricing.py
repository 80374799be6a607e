"""Warehouse repricing (dbt/models/intermediate/int_calls_priced.sql) on the real ClickHouse engine
and real dbt runs, against the reference pricing in Python (docs/pricing.md): prices.price_for,
prices.discount_for, PriceRecord.cost_usd and OrgDiscount.apply.

Rows are inserted as the warehouse ingest stores them (the records' own JSON plus the Kafka
metadata, `_timestamp` being the publication time); the path from Kafka to these tables is
tested elsewhere. Calls are stored as the pipeline writes them: priced with the catalog it had,
or unpriced.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from tests.conftest import make_settings
from tests.integration.fortnight import store_budgets
from yieldmeter.budgets import Budget
from yieldmeter.contracts import OrgDiscount, PriceRecord, to_json_bytes
from yieldmeter.ingest import INSERT_SETTINGS
from yieldmeter.prices import build_catalog, discount_for, price_for
from yieldmeter.transform import run_dbt
from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration

COUNTS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
COMPONENTS = ("input", "cache_read", "cache_write", "output", "reasoning")
SEEDED_AT = datetime(2026, 1, 5, 9, tzinfo=UTC)  # when the catalog was published
_offsets = itertools.count(1)


# --- what the ingest and the pipeline store -------------------------------------------------------


def publish(client, records: list[PriceRecord | OrgDiscount], at: datetime) -> None:
    """Store prices and discounts as the ingest does, published (Kafka timestamp) at ``at``."""
    for table, kind in (("prices", PriceRecord), ("org_discounts", OrgDiscount)):
        rows = [to_json_bytes(r)[:-1] + b',"_topic":"usage.prices","_partition":0,"_offset":%d,"_timestamp":%.3f}'
                % (next(_offsets), at.timestamp()) for r in records if isinstance(r, kind)]
        if rows:
            client.raw_insert(table, insert_block=b"\n".join(rows), fmt="JSONEachRow", settings=INSERT_SETTINGS)


def components(price: PriceRecord, usage) -> dict[str, Decimal]:
    """List cost per token type at the price's rates (their sum is PriceRecord.cost_usd)."""
    rates = price.rates_for(usage.input_tokens)
    tokens = {"input": usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens,
              "cache_read": usage.cache_read_tokens, "cache_write": usage.cache_write_tokens,
              "output": usage.output_tokens - usage.reasoning_tokens, "reasoning": usage.reasoning_tokens}
    return {name: (tokens[name] * getattr(rates, name)).scaleb(-6) for name in COMPONENTS}


def expected_pricing(price: PriceRecord | None, discount: OrgDiscount | None, usage) -> dict:
    """The call's pricing columns by the reference rules (costs 0 when unpriced)."""
    if price is None:
        return {"price_id": "", "is_context_tier": False, **{f"cost_{n}_usd": Decimal(0) for n in COMPONENTS},
                "list_cost_usd": Decimal(0), "cost_usd": Decimal(0),
                "discount_id": discount.discount_id if discount else "",
                "discount_pct": discount.discount_pct if discount else Decimal(0)}
    parts = components(price, usage)
    list_cost = price.cost_usd(usage)
    assert sum(parts.values()) == list_cost  # the split adds up to the reference total
    return {"price_id": price.price_id,
            "is_context_tier": price.tier_threshold_input_tokens is not None
            and usage.input_tokens > price.tier_threshold_input_tokens,
            **{f"cost_{n}_usd": v for n, v in parts.items()}, "list_cost_usd": list_cost,
            "cost_usd": discount.apply(list_cost) if discount else list_cost,
            "discount_id": discount.discount_id if discount else "",
            "discount_pct": discount.discount_pct if discount else Decimal(0)}


def stream_call(event_id: str, at: datetime, org: str, provider: str, model: str, tier: str, usage,
                pricing: dict | None, **fields) -> dict:
    """A calls row as the pipeline writes it: priced with ``pricing`` (expected_pricing), or unpriced
    (None, or a pricing without a price: then only its discount is recorded, as the pipeline does)."""
    row = {"event_id": event_id, "occurred_at": at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], "org_id": org,
           "team": fields.get("team", "t"), "user_id": fields.get("user_id", "u"), "app": fields.get("app", "a"),
           "provider": provider, "provider_raw": provider, "request_model": model, "response_model": model,
           "model": model, "operation": "chat", "service_tier": tier, **{c: getattr(usage, c) for c in COUNTS},
           "session_key": fields.get("session_key", f"{org}/{event_id}"), "session_id": fields.get("session_id", ""),
           "status": "ok", "tool_calls": 0, "attributes": {}, "source_topic": "usage.events",
           "source_partition": 0, "source_offset": 0, "schema_version": 1, "_topic": "usage.priced",
           "_partition": 0, "_offset": next(_offsets), "_timestamp": at.timestamp()}
    if pricing is None or not pricing["price_id"]:
        row |= {"pricing_status": "unpriced"}
        if pricing:
            row |= {"discount_id": pricing["discount_id"], "discount_pct": str(pricing["discount_pct"])}
    else:
        row |= {"pricing_status": "priced", **{k: str(v) if isinstance(v, Decimal) else v for k, v in pricing.items()}}
    return row


def store_calls(client, rows: list[dict]) -> None:
    import json

    client.raw_insert("calls", insert_block="\n".join(json.dumps(r) for r in rows).encode(), fmt="JSONEachRow",
                      settings=INSERT_SETTINGS)


def utc(at: datetime) -> datetime:
    """A time as clickhouse-connect returns a DateTime64(3, 'UTC'): naive, in UTC."""
    return at.astimezone(UTC).replace(tzinfo=None)


def usage(**counts) -> SimpleNamespace:
    return SimpleNamespace(**{c: counts.get(c, 0) for c in COUNTS})


# --- the grid: every history of the real seeded catalog --------------------------------------------


def off_peak_windows(prices: list[PriceRecord]) -> list[PriceRecord]:
    """DeepSeek's off-peak prices (genai-prices: half price 16:30-00:30 UTC) as windowed records beside
    each DeepSeek all-day price, when the seed does not carry them yet."""
    if any(p.time_of_day_start for p in prices):
        return []
    return [p.model_copy(update={
        "time_of_day_start": "16:30:00", "time_of_day_end": "00:30:00", "source": "user",
        "input_per_mtok": p.input_per_mtok / 2, "output_per_mtok": p.output_per_mtok / 2,
        "cache_read_per_mtok": p.cache_read_per_mtok and p.cache_read_per_mtok / 2})
        for p in prices if p.provider == "deepseek"]


DISCOUNTS = [
    OrgDiscount(org_id="acme", discount_pct=Decimal("10"), effective_from=datetime(2020, 1, 1, tzinfo=UTC)),
    OrgDiscount(org_id="acme", provider="openai", discount_pct=Decimal("12.5"),
                effective_from=datetime(2026, 3, 1, tzinfo=UTC)),
    OrgDiscount(org_id="acme", provider="anthropic", discount_pct=Decimal("0"),
                effective_from=datetime(2026, 6, 1, tzinfo=UTC)),
    OrgDiscount(org_id="acme", provider="gcp.vertex_ai", discount_pct=Decimal("33.3333"),
                effective_from=datetime(2025, 1, 1, tzinfo=UTC)),
]
# times every history is priced at, besides the instants around each of its price changes: inside
# and outside the off-peak window, at its edges, across midnight
FIXED_TIMES = [datetime(2025, 3, 1, 10, tzinfo=UTC), datetime(2026, 10, 1, 0, 15, tzinfo=UTC),
               datetime(2026, 10, 1, 0, 30, tzinfo=UTC), datetime(2026, 10, 1, 16, 29, 59, 999000, tzinfo=UTC),
               datetime(2026, 10, 1, 16, 30, tzinfo=UTC), datetime(2026, 12, 24, 20, tzinfo=UTC)]


def grid(prices: list[PriceRecord]):
    """(event_id, time, org, provider, model, tier, usage) over every price history: on both sides of
    each price change, in and out of daily windows, below, at and above context thresholds, on the
    history's tier and on a tier the model may lack (default-tier fallback)."""
    changes: dict[tuple[str, str], set[datetime]] = defaultdict(set)
    thresholds: dict[tuple[str, str], set[int]] = defaultdict(set)
    tiers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for p in prices:
        changes[p.provider, p.model].add(p.effective_from)
        tiers[p.provider, p.model].add(p.service_tier)
        if p.tier_threshold_input_tokens:
            thresholds[p.provider, p.model].add(p.tier_threshold_input_tokens)
    n = itertools.count()
    for (provider, model), starts in sorted(changes.items()):
        times = set(FIXED_TIMES)
        for start in starts:
            if start.year > 1970:
                times |= {start - timedelta(milliseconds=1), start, start + timedelta(hours=17)}
        usages = [usage(input_tokens=5000, cache_read_tokens=1000, output_tokens=700),
                  usage(input_tokens=1_234_567, cache_read_tokens=234_567, cache_write_tokens=12_345,
                        output_tokens=45_678, reasoning_tokens=5_678)]
        for threshold in thresholds[provider, model]:
            usages += [usage(input_tokens=threshold, cache_write_tokens=100, output_tokens=10, reasoning_tokens=3),
                       usage(input_tokens=threshold + 1, cache_read_tokens=7, output_tokens=10)]
        for tier in sorted(tiers[provider, model] | {"priority", "flex"}):
            for at, use in itertools.product(sorted(times), usages):
                i = next(n)
                yield f"g{i}", at, ("acme", "beta")[i % 2], provider, model, tier, use
    for i, (provider, model) in enumerate([("google", "gemini-2.5-pro"), ("acme-ai", "no-such-model")]):
        yield f"unknown{i}", FIXED_TIMES[0], "acme", provider, model, "default", usage(input_tokens=10)


def test_the_warehouse_prices_every_call_as_the_reference_does(tmp_path):
    """The real seeded catalog (+ off-peak windows): every call stored unpriced is priced by dbt
    exactly as the reference prices it, and every call the stream priced the same way is left alone."""
    catalog = build_catalog()
    prices = list(catalog.prices.values())
    prices += off_peak_windows(prices)
    by_model: dict[tuple[str, str], list[PriceRecord]] = defaultdict(list)
    for p in prices:
        by_model[p.provider, p.model].append(p)
    assert sum(1 for p in prices if p.time_of_day_start) and sum(1 for p in prices if p.tier_threshold_input_tokens)

    expected, rows, fallbacks = {}, [], 0
    for event_id, at, org, provider, model, tier, use in grid(prices):
        price = price_for(by_model[provider, model], provider, model, tier, at)
        fallbacks += price is not None and price.service_tier != tier
        discount = discount_for(DISCOUNTS, org, provider, at)
        pricing = expected_pricing(price, discount, use)
        expected[event_id] = pricing
        unpriced = expected_pricing(None, discount, use)  # the stream had no price ...
        rows.append(stream_call(event_id, at, org, provider, model, tier, use, unpriced))
        if price is not None:  # ... or priced it as the reference does
            expected[f"{event_id}-priced"] = pricing
            rows.append(stream_call(f"{event_id}-priced", at, org, provider, model, tier, use, pricing))
    settings = make_settings(tmp_path / "state")
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
        publish(client, prices + DISCOUNTS, SEEDED_AT)
        store_calls(client, rows)
    run = run_dbt(settings, ["run", "--select", "+int_calls_priced"])
    assert run.success, run.failures()

    columns = ["pricing_status", *expected[next(iter(expected))]]
    with open_warehouse(settings.warehouse_url) as client:
        found = {r[0]: dict(zip(columns, r[1:])) for r in client.query(
            f"SELECT event_id, {', '.join(columns)} FROM int_calls_priced").result_rows}
    assert set(found) == set(expected)
    wrong = []
    for event_id, want in expected.items():
        status = ("priced" if event_id.endswith("-priced") else "repriced") if want["price_id"] else "unpriced"
        got = found[event_id]
        if got != {"pricing_status": status, **want}:
            wrong.append((event_id, {k: (v, got[k]) for k, v in want.items() if got[k] != v}, got["pricing_status"]))
    assert not wrong, f"{len(wrong)} of {len(expected)} calls differ, e.g. {wrong[:3]}"
    statuses = {(k.endswith("-priced"), v["pricing_status"]) for k, v in found.items()}
    assert statuses == {(False, "repriced"), (False, "unpriced"), (True, "priced")}
    # every rule was exercised: windows, context tiers, default-tier fallback, discounts
    assert any("/16:30:00-00:30:00@" in v["price_id"] for v in found.values()) and fallbacks
    assert any(v["is_context_tier"] for v in found.values())
    assert any(v["discount_pct"] == Decimal("33.3333") and v["price_id"] for v in found.values())


# --- a price and a back-dated discount published after their calls -------------------------------

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)
MODELS = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("vllm", "acme-llm-1")]  # the last: no price yet
NEW_PRICE = PriceRecord(provider="vllm", model="acme-llm-1", effective_from=datetime(2026, 10, 1, tzinfo=UTC),
                        input_per_mtok=Decimal("0.35"), output_per_mtok=Decimal("1.4"), source="user")
# negotiated mid-November, back-dated to the start of the contract
BACKDATED = OrgDiscount(org_id="globex", discount_pct=Decimal("17.5"), effective_from=NOVEMBER)
PRICING = ["pricing_status", "price_id", "is_context_tier", "discount_id", "discount_pct",
           *(f"cost_{n}_usd" for n in COMPONENTS), "list_cost_usd", "cost_usd"]


def workload(prices: list[PriceRecord]) -> tuple[list[dict], dict[str, tuple]]:
    """Ten days of three orgs' support-bot sessions (three calls each) on three models, priced by the
    stream with ``prices`` and no discount; and each call's (time, org, provider, model, usage)."""
    rows, calls = [], {}
    for org_index, org in enumerate(["acme", "globex", "initech"]):
        for s in range(30):
            provider, model = MODELS[s % 3]
            start = NOVEMBER + timedelta(days=s % 10, hours=8 + s % 9, minutes=7 * org_index)
            for c in range(3):
                event_id, at = f"{org}-s{s}-c{c}", start + timedelta(minutes=c)
                use = usage(input_tokens=2000 + 997 * s + 131 * c, cache_read_tokens=500 * c,
                            output_tokens=300 + 17 * s, reasoning_tokens=20 * c)
                pricing = expected_pricing(price_for(prices, provider, model, "default", at), None, use)
                rows.append(stream_call(event_id, at, org, provider, model, "default", use, pricing, team="support",
                                        user_id=f"{org}-u{s % 4}", app="support-bot", session_id=f"{org}-s{s}",
                                        session_key=f"{org}/{org}-s{s}"))
                calls[event_id] = (at, org, provider, model, use)
    return rows, calls


def close_sessions_and_report_outcomes(client) -> None:
    """The sessions the pipeline closes over these calls, and a resolved ticket for three sessions in four."""
    client.command("""
        INSERT INTO sessions (session_uid, session_key, is_correction, org_id, team, user_id, app, session_id,
            started_at, ended_at, calls, errors, cancelled, retries, unpriced_calls, input_tokens, cache_read_tokens,
            cache_write_tokens, output_tokens, reasoning_tokens, tool_calls, max_input_tokens, models_used,
            list_cost_usd, cost_usd, _topic, _partition, _offset, _timestamp)
        SELECT lower(hex(MD5(session_key))), session_key, false, any(org_id), any(team), any(user_id), any(app),
            any(session_id), min(occurred_at), max(occurred_at), count(), 0, 0, 0, countIf(pricing_status != 'priced'),
            sum(input_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(output_tokens),
            sum(reasoning_tokens), 0, max(input_tokens), groupUniqArray(model), sum(list_cost_usd), sum(cost_usd),
            'usage.sessions', 0, 0, max(occurred_at)
        FROM calls GROUP BY session_key""")
    client.command("""
        INSERT INTO outcomes (outcome_id, occurred_at, org_id, team, user_id, app, session_id, outcome_type, success,
            attributes, schema_version, _topic, _partition, _offset, _timestamp)
        SELECT concat('o-', session_id), ended_at + toIntervalMinute(5), org_id, team, user_id, app, session_id,
            'ticket_resolved', true, map(), 1, 'usage.outcomes', 0, 0, ended_at
        FROM sessions WHERE toUInt32(splitByChar('s', session_id)[-1]) % 4 != 3""")


def build(settings) -> None:
    """`yieldmeter transform` as the main job runs it (the unit tests run in the e2e suite)."""
    run = run_dbt(settings, ["build", "--exclude-resource-type", "unit_test"])
    assert run.success, run.failures()


def marts(client) -> dict[str, dict]:
    return {r[0]: dict(zip(PRICING, r[1:])) for r in client.query(
        f"SELECT event_id, {', '.join(PRICING)} FROM fct_calls").result_rows}


def test_a_price_and_a_backdated_discount_published_later_reprice_their_calls(tmp_path):
    prices = [p for p in build_catalog().prices.values() if (p.provider, p.model) in MODELS]
    settings = make_settings(tmp_path / "state")
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
        publish(client, prices, SEEDED_AT)
        rows, calls = workload(prices)
        store_calls(client, rows)
        close_sessions_and_report_outcomes(client)
        store_budgets(client, [Budget(org_id="globex", limit_usd=Decimal(1000))])
    stream = {r["event_id"]: r for r in rows}
    new_model = {e for e, (_, _, provider, *_) in calls.items() if provider == "vllm"}
    globex = {e for e, (_, org, *_) in calls.items() if org == "globex"}

    def expect(catalog: list[PriceRecord], discounts: list[OrgDiscount]) -> dict[str, dict]:
        """Every call as the reference prices it now; 'priced' where the stream wrote exactly that."""
        out = {}
        for event_id, (at, org, provider, model, use) in calls.items():
            pricing = expected_pricing(price_for(catalog, provider, model, "default", at),
                                       discount_for(discounts, org, provider, at), use)
            recorded = {k: stream[event_id].get(k, "" if k.endswith("_id") else "0") for k in pricing}
            same = all(str(v) == str(recorded[k]) or (isinstance(v, Decimal) and v == Decimal(recorded[k]))
                       for k, v in pricing.items() if k != "is_context_tier")
            status = "unpriced" if not pricing["price_id"] else "priced" if same else "repriced"
            out[event_id] = {"pricing_status": status, **pricing}
        return out

    # 1. as the stream wrote it: nothing to reprice; the new model's calls are unpriced
    build(settings)
    with open_warehouse(settings.warehouse_url) as client:
        assert marts(client) == expect(prices, [])
        assert client.query("SELECT count() FROM repricing_audit").result_rows == [(0,)]
        partial, unknown = client.query(
            "SELECT count(), countIf(cost_per_successful_outcome_usd IS NULL) FROM value_metrics_daily "
            "WHERE unpriced_calls > 0 AND successful_outcomes > 0").result_rows[0]
    assert partial == unknown > 0  # cost per outcome unknown, not low

    # 2. the new model's price, effective since October, is published on 20 November
    price_at = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    with open_warehouse(settings.warehouse_url) as client:
        publish(client, [NEW_PRICE], price_at)
    build(settings)
    want = expect(prices + [NEW_PRICE], [])
    with open_warehouse(settings.warehouse_url) as client:
        found = marts(client)
        audit = {r[0]: r[1:] for r in client.query(
            "SELECT event_id, reasons, changed_at, recorded_cost_usd, current_cost_usd FROM repricing_audit").result_rows}
        daily = client.query("SELECT sum(cost_usd), sum(unpriced_calls), countIf(successful_outcomes > 0 AND "
                             "cost_per_successful_outcome_usd != CAST(cost_usd / successful_outcomes AS "
                             "Decimal(38, 12))) FROM value_metrics_daily").result_rows[0]
        sessions = client.query("SELECT sum(cost_usd), sum(unpriced_calls) FROM fct_sessions").result_rows[0]
    assert found == want
    assert {e for e, w in want.items() if w["pricing_status"] == "repriced"} == new_model == set(audit)
    for event_id, (reasons, changed_at, recorded, current) in audit.items():
        assert (reasons, changed_at, recorded) == (["newly_priced"], utc(price_at), 0), event_id
        assert current == found[event_id]["cost_usd"] > 0
    total = sum(w["cost_usd"] for w in want.values())
    assert daily == (total, 0, 0) and sessions == (total, 0)  # every call priced: cost per outcome known

    # 3. globex's discount, back-dated to 1 November, is published on 25 November
    discount_at = datetime(2026, 11, 25, 9, tzinfo=UTC)
    with open_warehouse(settings.warehouse_url) as client:
        publish(client, [BACKDATED], discount_at)
    build(settings)
    want = expect(prices + [NEW_PRICE], [BACKDATED])
    with open_warehouse(settings.warehouse_url) as client:
        found = marts(client)
        audit = {r[0]: (r[1], r[2]) for r in client.query(
            "SELECT event_id, reasons, changed_at FROM repricing_audit").result_rows}
        per_org = dict(client.query("SELECT org_id, sum(cost_usd) FROM value_metrics_daily GROUP BY org_id").result_rows)
        budget = client.query("SELECT month_to_date_usd FROM budget_status WHERE org_id = 'globex' AND team = '*' "
                              "AND month = '2026-11-01'").result_rows
    assert found == want
    assert set(audit) == new_model | globex
    for event_id, (reasons, changed_at) in audit.items():
        price = ["newly_priced"] if event_id in new_model else []
        discount = ["discount_backdated"] if event_id in globex else []
        assert (reasons, changed_at) == (price + discount, utc(discount_at if discount else price_at)), event_id
        if discount:
            assert found[event_id]["discount_id"] == BACKDATED.discount_id
    globex_cost = sum(want[e]["cost_usd"] for e in globex)
    assert globex_cost == sum(BACKDATED.apply(want[e]["list_cost_usd"]) for e in globex) == per_org["globex"]
    assert budget == [(globex_cost,)]
    # calls no later record covers keep exactly what the stream wrote
    untouched = set(calls) - new_model - globex
    assert all(found[e]["pricing_status"] == "priced" and found[e]["cost_usd"] == Decimal(stream[e]["cost_usd"])
               for e in untouched)
