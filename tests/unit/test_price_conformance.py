"""Pricing conformance with genai-prices over its whole catalogue (tests/price_grid.py).

Three implementations of docs/pricing.md meet one oracle, genai_prices.calc_price: the Python
reference (normalize -> prices.price_for -> PriceRecord.cost_usd) and the price job's Java
pricer (CallPricer, the same PriceBook the job runs, on the same seeded catalog, here offline:
no broker). The warehouse's repricing is checked against the Python reference in its own tests.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from tests import price_grid
from tests.java_udf import run_main, udf_classpath
from yieldmeter.contracts import OrgDiscount, PriceRecord
from yieldmeter.normalize import PROVIDER_CATALOGUE, PROVIDER_SPELLINGS, normalize_model, normalize_provider
from yieldmeter.prices import build_catalog, discount_for, price_for

pytestmark = pytest.mark.unit
DISCOUNTS = [
    OrgDiscount(org_id="acme", discount_pct="12.5", effective_from="2025-01-01T00:00:00Z"),
    OrgDiscount(org_id="acme", provider="openai", discount_pct="30", effective_from="2025-06-01T00:00:00Z"),
    OrgDiscount(org_id="acme", provider="openai", discount_pct="0", effective_from="2026-03-01T00:00:00Z"),
]


@pytest.fixture(scope="module")
def catalog():
    catalog = build_catalog()
    for discount in DISCOUNTS:
        catalog.discounts[discount.discount_id] = discount
    return catalog


@pytest.fixture(scope="module")
def grid():
    rows = []
    for call in price_grid.calls():
        total, model = price_grid.oracle(call)
        rows.append((call, total, model, price_grid.expected_difference(call, model)))
    return rows


@pytest.fixture(scope="module")
def pricer(tmp_path_factory, catalog):
    """Run the job's pricer offline: lines of calls in, lines of priced fields out."""
    folder = tmp_path_factory.mktemp("pricer")
    classpath = udf_classpath()
    catalog_file = folder / "catalog.tsv"
    catalog_file.write_text("".join(f"{key}\t{value.decode()}\n" for key, value, _ in catalog.messages()))

    def run(main: str, lines: list[str], *args: str) -> list[list[str]]:
        return [line.split("\t") for line in run_main(classpath, main, lines, *args)]

    return lambda lines: run("CallPricer", lines, str(catalog_file)), lambda lines: run("ModelResolver", lines)


def _reference(by_model, call: price_grid.Call, org_id: str = "conformance"):
    provider = normalize_provider(call.provider)
    model = normalize_model(provider, call.model)
    record: PriceRecord | None = price_for(by_model[(provider, model)], provider, model, call.service_tier, call.at)
    if record is None:
        return None, None
    list_cost = record.cost_usd(call)
    discount = discount_for(DISCOUNTS, org_id, provider, call.at)
    return list_cost, discount.apply(list_cost) if discount else list_cost


def _compare(rows, ours) -> tuple[Counter, list]:
    """Per row: agree, or the named difference, or a mismatch (listed)."""
    outcome: Counter[str] = Counter()
    mismatches = []
    for (call, total, model, difference), mine in zip(rows, ours, strict=True):
        if difference:
            outcome[difference] += 1
        elif total is None and mine is None:
            outcome["unpriced by both"] += 1
        elif total is not None and mine is not None and abs(mine - total) <= price_grid.TOLERANCE:
            outcome["agree"] += 1
        else:
            mismatches.append((call, model, total, mine))
    return outcome, mismatches


def test_the_grid_covers_the_whole_catalogue(grid):
    from genai_prices.data_snapshot import get_snapshot

    models = {(c.gp_provider, c.model) for c, *_ in grid}
    assert models == {(p.id, m.id) for p in get_snapshot().providers for m in p.models}
    sent = {c.provider for c, *_ in grid}
    assert {"google", "gemini", "vertex_ai", "bedrock", "azure", "mistral", "x-ai", "xai", "gcp.gemini"} <= sent
    assert any(c.at.hour == 16 and c.at.minute == 30 for c, *_ in grid if c.gp_provider == "deepseek")  # off-peak edges


def test_reference_prices_agree_with_genai_prices(catalog, grid):
    by_model = defaultdict(list)
    for record in catalog.prices.values():
        by_model[(record.provider, record.model)].append(record)
    ours = [_reference(by_model, call)[0] for call, *_ in grid]
    outcome, mismatches = _compare(grid, ours)
    assert not mismatches, f"{len(mismatches)} of {len(grid)} differ, e.g. {mismatches[:5]}"
    assert outcome["agree"] > 0.9 * len(grid), outcome


def test_the_jobs_pricer_agrees_with_genai_prices_and_the_reference(catalog, grid, pricer):
    """Every call of the grid through the job's Java pricer: list cost = calc_price; the org
    discount as OrgDiscount.apply; the string forms the warehouse reads (15 and 21 decimals)."""
    price_calls, _ = pricer
    by_model = defaultdict(list)
    for record in catalog.prices.values():
        by_model[(record.provider, record.model)].append(record)
    for org in ("conformance", "acme"):
        out = price_calls([call.tsv(org) for call, *_ in grid])
        assert len(out) == len(grid)
        ours = [Decimal(row[12]) if row[12] else None for row in out]
        outcome, mismatches = _compare(grid, ours)
        assert not mismatches, f"{len(mismatches)} of {len(grid)} differ, e.g. {mismatches[:5]}"
        assert outcome["agree"] > 0.9 * len(grid), outcome
        for (call, *_), row in zip(grid, out, strict=True):
            reference_list, reference_cost = _reference(by_model, call, org)
            assert (row[2] == "priced") == (reference_list is not None), (call, row)
            if reference_list is not None:
                assert Decimal(row[12]) == reference_list and Decimal(row[13]) == reference_cost, (call, row)
                assert len(row[12].split(".")[1]) == 15 and len(row[13].split(".")[1]) == 21, row
                assert sum(Decimal(x) for x in row[7:12]) == Decimal(row[12])
            else:
                assert row[7:14] == [""] * 7, row  # unpriced: null costs, never zero


def test_the_jobs_pricer_applies_daily_windows_and_discounts_by_time(pricer):
    """DeepSeek's off-peak window (16:30-00:30 UTC) and a discount that changes over time."""
    price_calls, _ = pricer
    calls = [
        "deepseek\tdeepseek-chat\tdefault\tacme\t2026-11-20T16:29:59.999Z\t1000000\t0\t0\t0\t0",
        "deepseek\tdeepseek-chat\tdefault\tacme\t2026-11-20T16:30:00.000Z\t1000000\t0\t0\t0\t0",
        "deepseek\tdeepseek-chat\tdefault\tacme\t2026-11-21T00:29:59.999Z\t1000000\t0\t0\t0\t0",
        "deepseek\tdeepseek-chat\tdefault\tacme\t2026-11-21T00:30:00.000Z\t1000000\t0\t0\t0\t0",
        "openai\tgpt-4o\tdefault\tacme\t2025-05-31T23:59:59.999Z\t1000000\t0\t0\t0\t0",
        "OpenAI\tgpt-4o-2024-08-06\tdefault\tacme\t2025-06-01T00:00:00.000Z\t1000000\t0\t0\t0\t0",
        "openai\tgpt-4o\tdefault\tacme\t2026-03-01T00:00:00.000Z\t1000000\t0\t0\t0\t0",
        "openai\tgpt-4o\tdefault\tother-org\t2026-03-01T00:00:00.000Z\t1000000\t0\t0\t0\t0",
    ]
    rows = price_calls(calls)
    assert [Decimal(r[12]) for r in rows[:4]] == [Decimal("0.27"), Decimal("0.135"), Decimal("0.135"), Decimal("0.27")]
    assert "/16:30:00-00:30:00@" in rows[1][3] and "/" not in rows[0][3].split("default")[1]
    assert [r[5:7] for r in rows[4:]] == [
        ["discount/acme/*@2025-01-01T00:00:00.000Z", "12.5000"],
        ["discount/acme/openai@2025-06-01T00:00:00.000Z", "30.0000"],
        ["discount/acme/openai@2026-03-01T00:00:00.000Z", "0.0000"],
        ["", ""],
    ]
    assert [Decimal(r[13]) for r in rows[4:]] == [Decimal("2.1875"), Decimal("1.75"), Decimal("2.5"), Decimal("2.5")]


def test_the_job_normalises_providers_as_normalize_provider(pricer):
    """Every spelling, canonical name and genai-prices id, as the job's decoder resolves it."""
    from genai_prices.data_snapshot import get_snapshot

    price_calls, _ = pricer
    names = sorted(set(PROVIDER_SPELLINGS) | set(PROVIDER_CATALOGUE) | {p.id for p in get_snapshot().providers}
                   | {"vllm", "OpenAI", " Google ", "AWS.Bedrock", "together-ai", "huggingface"})  # fmt: skip
    rows = price_calls([f"{name}\tsome-model\tdefault\tacme\t2026-01-01T00:00:00.000Z\t1\t0\t0\t1\t0" for name in names])
    assert {n: r[0] for n, r in zip(names, rows)} == {n: normalize_provider(n) for n in names}
    assert normalize_provider("google") == "gcp.gen_ai" and normalize_provider("vertex_ai") == "gcp.vertex_ai"


def test_the_job_resolves_model_ids_as_normalize_model(pricer):
    """The job's Java ModelResolver, on the rules exported from genai-prices, agrees with
    yieldmeter.normalize.normalize_model: every catalogue model under every provider name,
    dated, prefixed and upper-cased."""
    import random

    from genai_prices.data_snapshot import get_snapshot

    _, resolve = pricer
    names = sorted({n for p in get_snapshot().providers for n in price_grid.spellings(p.id)} | {"vllm", "OpenAI"})
    ids = {"acme-internal-llm-v1", "gpt-5.2-20251211", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"}
    for provider in get_snapshot().providers:
        for model in provider.models:
            ids |= {model.id, f"{model.id}-2024-08-06", f"{model.id}-20241022", f"models/{model.id}", model.id.upper()}
    rng = random.Random(7)
    pairs = [(p, m) for m in sorted(ids) for p in rng.sample(names, 2)]
    resolved = [row[0] for row in resolve([f"{p}\t{m}" for p, m in pairs])]
    assert len(resolved) == len(pairs)
    differ = [(p, m, j, normalize_model(p, m)) for (p, m), j in zip(pairs, resolved) if j != normalize_model(p, m)]
    assert not differ, differ[:10]
