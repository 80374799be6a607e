"""The price catalog: the genai-prices seed, user files, discounts, and agreement with genai-prices' calculator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage
from genai_prices.data_snapshot import get_snapshot
from typer.testing import CliRunner

from yieldmeter.contracts import PriceRecord, parse_price, schema_text
from yieldmeter.normalize import OTEL_PROVIDERS, PROVIDER_CATALOGUE, TokenUsage, canonical_names, normalize_model
from yieldmeter.prices import (
    SERVICE_TIERS,
    OrgDiscount,
    PriceFileError,
    build_catalog,
    discount_for,
    price_for,
    read_price_file,
    seed_prices,
)

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "infra" / "prices"
NANO = Decimal("0.000000001")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def seed() -> list[PriceRecord]:
    return seed_prices()[0]


def one(records, provider: str, model: str, tier: str = "default", at: datetime | None = None) -> PriceRecord:
    record = price_for(records, provider, model, tier, at or datetime(2026, 6, 1, 12, tzinfo=UTC))
    assert record is not None and record.service_tier == tier
    return record


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- the seed --------------------------------------------------------------------------------


def test_seed_covers_every_provider_name_with_unique_ids(seed):
    names = {name for p in get_snapshot().providers for name in canonical_names(p.id)}
    assert {r.provider for r in seed} <= names
    assert {"openai", "gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai", "aws.bedrock", "azure.ai.openai", "mistral_ai",
            "x_ai", "deepseek", "together", "fireworks", "openrouter"} <= {r.provider for r in seed}
    assert len({r.price_id for r in seed}) == len(seed) > 1000
    assert {r.source for r in seed} == {"genai-prices"}
    assert {"default", "batch", "flex", "priority"} <= {r.service_tier for r in seed}


def test_provider_names_are_the_ones_normalize_maps_to_genai_prices():
    for gp_id, names in OTEL_PROVIDERS.items():
        for name in names:
            assert PROVIDER_CATALOGUE.get(name, name) == gp_id, name


def test_catalog_ids_are_what_normalize_model_returns(seed):
    # The price job joins on (provider, normalize_model(...), service_tier): every seeded id must
    # be a fixed point of the normaliser, or its record could never be joined.
    assert [r.price_id for r in seed if normalize_model(r.provider, r.model) != r.model] == []
    # and aliases as producers send them land on a seeded id
    ids = {(r.provider, r.model) for r in seed}
    for provider, sent in [("openai", "gpt-4o-2024-08-06"), ("anthropic", "claude-3-5-sonnet-20241022"),
                           ("gcp.vertex_ai", "publishers/google/models/gemini-2.5-pro"),
                           ("gcp.gemini", "models/gemini-1.5-pro-002"), ("gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022"),
                           ("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0")]:
        assert (provider, normalize_model(provider, sent)) in ids, sent


def test_dated_prices_become_a_history_with_effective_from(seed):
    # genai-prices: claude-opus-4-6 had a >200k context tier until 2026-03-13, then one flat price.
    history = sorted((r for r in seed if r.key == "anthropic/claude-opus-4-6/default"), key=lambda r: r.effective_from)
    assert [r.effective_from for r in history] == [EPOCH, datetime(2026, 3, 13, tzinfo=UTC)]
    assert history[0].tier_threshold_input_tokens == 200_000 and history[0].input_above_per_mtok == Decimal("10")
    assert history[1].tier_threshold_input_tokens is None and history[1].input_per_mtok == Decimal("5")
    assert one(seed, "anthropic", "claude-opus-4-6", at=datetime(2026, 3, 12, 23, tzinfo=UTC)) == history[0]
    assert one(seed, "anthropic", "claude-opus-4-6", at=datetime(2026, 3, 13, tzinfo=UTC)) == history[1]


def test_service_tiers_start_when_genai_prices_knows_them(seed):
    # gpt-5's flex price is in genai-prices from 2026-10-12 on; before that no flex record exists
    # (the job falls back to the default tier or marks the call unpriced; it never guesses).
    flex = [r for r in seed if r.key == "openai/gpt-5/flex"]
    assert [(r.effective_from, r.input_per_mtok, r.output_per_mtok) for r in flex] == [
        (datetime(2026, 10, 12, tzinfo=UTC), Decimal("0.625"), Decimal("5"))]
    assert one(seed, "openai", "gpt-5").input_per_mtok == Decimal("1.25")


def test_models_with_a_per_request_fee_or_no_token_price_are_left_out():
    records, report = seed_prices()
    ids = {(r.provider, r.model) for r in records}
    assert ("perplexity", "sonar") not in ids  # $/1k requests on top of tokens: token-only would under-charge
    assert ("openai", "dall-e-3") not in ids  # priced per image
    assert report.skipped["per-request fee (a token-only price would under-charge every call)"] >= 1
    assert report.skipped["no per-token input/output price"] >= 1
    assert report.records == len(records) and report.lines()[0].startswith(f"{len(records)} price records")


# --- agreement with genai-prices' own calculator -----------------------------------------------

MIXES = [
    TokenUsage(1_000, 500),
    TokenUsage(50_000, 2_000, cache_read_tokens=30_000, cache_write_tokens=5_000, reasoning_tokens=1_500),
    TokenUsage(300_000, 4_000, cache_read_tokens=100_000, cache_write_tokens=20_000, reasoning_tokens=3_000),  # above 200k/272k tiers
    TokenUsage(150_000, 0, cache_write_tokens=150_000),
    TokenUsage(0, 0),
]


def genai_cost(record: PriceRecord, usage: TokenUsage, at: datetime) -> Decimal:
    """genai-prices' price of the call, computed by genai-prices from the model the record came from."""
    gp_provider = PROVIDER_CATALOGUE.get(record.provider, record.provider)
    providers = {p.id: p for p in get_snapshot().providers}
    provider = providers[gp_provider]
    candidates = provider.models + [m for f in provider.fallback_model_providers or () for m in providers[f].models]
    model = next(m for m in candidates if m.id.lower() == record.model)
    context = None
    if record.service_tier != "default" or model in provider.models:
        # the request context that selects this tier in genai-prices
        context = next((dict(v.when) for v in model.price_variants or ()
                        if any(SERVICE_TIERS.get(item) == record.service_tier for item in v.when.items())),
                       {"service_tier": "default"})
    # Usage in OTel terms, like ours: input includes cache reads and writes, output includes reasoning.
    gp_usage = Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                     cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
                     output_reasoning_tokens=usage.reasoning_tokens)
    return model.calc_price(gp_usage, provider, genai_request_timestamp=at, price_context=context).total_price


def second_tier_start(record: PriceRecord) -> float:
    """Where genai-prices' second context tier of the record's model starts (inf: none)."""
    from genai_prices.types import TieredPrices

    providers = {p.id: p for p in get_snapshot().providers}
    provider = providers[PROVIDER_CATALOGUE.get(record.provider, record.provider)]
    candidates = provider.models + [m for f in provider.fallback_model_providers or () for m in providers[f].models]
    model = next(m for m in candidates if m.id.lower() == record.model)
    prices = [c.prices for c in model.prices] if isinstance(model.prices, list) else [model.prices]
    starts = [v.tiers[1].start for p in prices for v in p.__dict__.values() if isinstance(v, TieredPrices) and len(v.tiers) > 1]
    return min(starts, default=float("inf"))


def test_every_seeded_price_costs_what_genai_prices_computes(seed):
    # Every record x every token mix, at noon UTC of its first day in force, or at the start of
    # its daily window. (tests/unit/test_price_conformance.py does the same for calls over the
    # whole catalogue, through the lookup.)
    # Not compared, because a PriceRecord cannot carry them and UsageEvent does not count them
    # (SeedReport lists them): 1-hour cache writes (UsageEvent has no TTL split, so the
    # usage reports plain cache writes, which genai-prices prices at cache_write_mtok like us),
    # audio/image/video token rates, web-search and storage fees.
    mismatches = []
    for record in seed:
        # noon, or a windowed price's own first second (DeepSeek's off-peak hours)
        at = record.effective_from + timedelta(hours=12)
        if record.time_of_day_start:
            hours, minutes, seconds = map(int, record.time_of_day_start.split(":"))
            at = record.effective_from + timedelta(hours=hours, minutes=minutes, seconds=seconds)
        for usage in MIXES:
            if usage.input_tokens > second_tier_start(record):
                continue  # a PriceRecord has one context tier (SeedReport notes the 2 models with more)
            ours, theirs = record.cost_usd(usage).quantize(NANO), genai_cost(record, usage, at).quantize(NANO)
            if ours != theirs:
                mismatches.append((record.price_id, usage, ours, theirs))
    assert mismatches == []


@pytest.mark.parametrize(("provider", "model", "usage", "expected"), [
    # above gemini-2.5-pro's 200k tier every token pays the tier rate: 200k x 2.5 + 50k cached x 0.25 + 8k x 15
    ("gcp.gemini", "gemini-2.5-pro",
     TokenUsage(250_000, 8_000, cache_read_tokens=50_000, reasoning_tokens=5_000), Decimal("0.6325")),
    ("gcp.gemini", "gemini-2.5-pro", TokenUsage(200_000, 1_000), Decimal("0.26")),  # exactly at the threshold: base
    # claude-sonnet-4-5 above 200k: 10k x 6 + 150k read x 0.6 + 50k write x 7.5 + 2k x 22.5
    ("anthropic", "claude-sonnet-4-5",
     TokenUsage(210_000, 2_000, cache_read_tokens=150_000, cache_write_tokens=50_000), Decimal("0.57")),
    ("anthropic", "claude-sonnet-4-5", TokenUsage(10_000, 1_000, cache_write_tokens=4_000), Decimal("0.048")),
    # reasoning is output: 1k x 1.25 + 5k x 10 (o-series and gpt-5 have no separate reasoning rate)
    ("openai", "gpt-5", TokenUsage(1_000, 5_000, reasoning_tokens=4_000), Decimal("0.05125")),
    # a separate reasoning rate: sonar-deep-research 1k x 2 + 1k x 8 + 2k reasoning x 3 (its web-search
    # and citation fees apply only when used and are not in UsageEvent)
    ("perplexity", "sonar-deep-research", TokenUsage(1_000, 3_000, reasoning_tokens=2_000), Decimal("0.016")),
    ("aws.bedrock", "regional.anthropic.claude-3-5-sonnet-20241022-v2:0", TokenUsage(1_000_000, 0), Decimal("3")),
])
def test_sample_calls_by_hand_and_by_genai_prices(seed, provider, model, usage, expected):
    record = one(seed, provider, model)
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert record.cost_usd(usage) == expected
    assert genai_cost(record, usage, at).quantize(NANO) == expected.quantize(NANO)


def test_time_of_day_prices_are_daily_windows(seed):
    # genai-prices prices DeepSeek calls between 16:30 and 00:30 UTC at its off-peak rate: the
    # seed publishes that as a windowed record beside the all-day one, and the lookup picks it.
    usage = TokenUsage(1_000_000, 0)
    for at, windowed in [(datetime(2026, 6, 1, 12, tzinfo=UTC), False), (datetime(2026, 6, 1, 20, tzinfo=UTC), True),
                         (datetime(2026, 6, 2, 0, 29, tzinfo=UTC), True), (datetime(2026, 6, 2, 0, 30, tzinfo=UTC), False)]:
        record = one(seed, "deepseek", "deepseek-chat", at=at)
        assert (record.time_of_day_start, record.time_of_day_end) == (("16:30:00", "00:30:00") if windowed else (None, None))
        assert record.cost_usd(usage) == genai_cost(record, usage, at)
    assert genai_cost(one(seed, "deepseek", "deepseek-chat"), usage, datetime(2026, 6, 1, 20, tzinfo=UTC)) < Decimal("0.27")


# --- user files ------------------------------------------------------------------------------


def test_example_files_read_exactly_and_alike():
    yaml_records = read_price_file(EXAMPLES / "overrides.example.yaml")
    csv_records = read_price_file(EXAMPLES / "overrides.example.csv")
    assert {r.source for r in yaml_records.prices + csv_records.prices} == {"user"}
    by_key = {r.price_id: r for r in yaml_records.prices}
    mini = by_key["openai/gpt-4o-mini/default@2027-01-01T00:00:00.000Z"]
    assert mini.input_per_mtok == Decimal("0.12") and str(mini.input_per_mtok) == "0.12"  # not 0.1199999...
    assert mini == next(r for r in csv_records.prices if r.price_id == mini.price_id)
    assert by_key["acme-gateway/llama-3.3-70b-instruct/default@1970-01-01T00:00:00.000Z"].output_per_mtok == Decimal("0.79")
    assert [(d.org_id, d.provider, d.discount_pct) for d in yaml_records.discounts] == [
        ("acme", "openai", Decimal("12.5")), ("acme", None, Decimal("5"))]
    tiered = next(r for r in csv_records.prices if r.model == "gemini-2.5-pro")
    assert tiered.tier_threshold_input_tokens == 200_000 and tiered.output_above_per_mtok == Decimal("15")


def test_user_price_replaces_the_seed_price_with_the_same_key_and_effective_from(seed, tmp_path):
    seeded = one(seed, "openai", "gpt-4o")
    override = write(tmp_path, "o.yaml", """
prices:
  - {provider: openai, model: gpt-4o, input_per_mtok: 2, output_per_mtok: 8}                        # same key, 1970
  - {provider: openai, model: gpt-4o, effective_from: "2027-01-01T00:00:00Z", input_per_mtok: 1, output_per_mtok: 4}
""")
    catalog = build_catalog([override])
    assert catalog.replaced == 1
    replaced = catalog.prices[seeded.price_id]
    assert (replaced.source, replaced.input_per_mtok, replaced.cache_read_per_mtok) == ("user", Decimal("2"), None)
    assert one(catalog.prices.values(), "openai", "gpt-4o").input_per_mtok == Decimal("2")
    assert one(catalog.prices.values(), "openai", "gpt-4o", at=datetime(2027, 1, 1, tzinfo=UTC)).input_per_mtok == 1
    # everything else of the seed is untouched
    assert len(catalog.prices) == len(seed) + 1


def test_later_file_wins_and_no_seed_loads_only_files(tmp_path):
    first = write(tmp_path, "a.csv", "provider,model,input_per_mtok,output_per_mtok\nacme,m1,1,2\n")
    second = write(tmp_path, "b.yaml", "prices:\n  - {provider: acme, model: M1, input_per_mtok: 3, output_per_mtok: 4}\n")
    catalog = build_catalog([first, second], seed=False)
    assert [(r.price_id, r.input_per_mtok) for r in catalog.prices.values()] == [
        ("acme/m1/default@1970-01-01T00:00:00.000Z", Decimal("3"))]
    assert catalog.seed is None and catalog.replaced == 0


def test_user_models_are_normalised_like_events(tmp_path):
    path = write(tmp_path, "p.yaml", "prices:\n  - {provider: gcp.gemini, model: models/gemini-1.5-pro-002, "
                                     "input_per_mtok: 1, output_per_mtok: 2}\n")
    (record,) = read_price_file(path).prices
    assert record.model == "gemini-1.5-pro"
    # providers as gateways spell them land on the canonical provider, prices and discounts alike
    path = write(tmp_path, "q.yaml", "prices:\n  - {provider: bedrock, model: us.anthropic.claude-3-5-sonnet-20241022-v2:0, "
                                     "input_per_mtok: 1, output_per_mtok: 2}\n"
                                     "discounts:\n  - {org_id: acme, provider: google, discount_pct: '10'}\n")
    records = read_price_file(path)
    assert (records.prices[0].provider, records.prices[0].model) == (
        "aws.bedrock", "regional.anthropic.claude-3-5-sonnet-20241022-v2:0")
    assert records.discounts[0].provider == "gcp.gen_ai"


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("bad.yaml", "prices:\n  - provider: openai\n    model: gpt-4o\n    input_per_mtok: -1\n    output_per_mtok: 2\n",
     ["bad.yaml prices[0]", "line 4", "field input_per_mtok", "greater than or equal to 0"]),
    ("bad.yaml", "prices:\n  - provider: openai\n    model: gpt-4o\n    output_per_mtok: 2\n    colour: red\n",
     ["prices[0]", "field input_per_mtok: required field is missing", "line 5, field colour: unknown field"]),
    ("bad.yaml", "prices:\n  - {provider: openai, model: x, input_per_mtok: 1, output_per_mtok: 1, "
                 "effective_from: 2026-01-01T00:00:00}\n",
     ["line 2, field effective_from", "UTC offset"]),
    ("bad.yaml", "prices:\n  - {provider: openai, model: x, input_per_mtok: 1, output_per_mtok: 1, source: genai-prices}\n",
     ["line 2, field source", "source 'user'"]),
    ("bad.yaml", "discounts:\n  - {org_id: acme, discount_pct: 120}\n",
     ["bad.yaml discounts[0]", "field discount_pct", "less than or equal to 100"]),
    ("bad.yaml", "price:\n  - {}\n", ["bad.yaml: line 1: unknown section 'price'"]),
    ("bad.yaml", "prices: [\n  {provider: openai\n", ["bad.yaml: line", "not valid YAML"]),
    ("bad.csv", "provider,model,input_per_mtok,output_per_mtok\nopenai,gpt-4o,2.5,10\nopenai,gpt-4o-mini,abc,1\n",
     ["bad.csv row 2 (line 3)", "field input_per_mtok", "'abc'"]),
    ("bad.csv", "provider,model,input_per_mtok,output_per_mtok,colour\nopenai,gpt-4o,2.5,10,red\n",
     ["bad.csv row 1 (line 2)", "field colour: unknown field"]),
    ("bad.csv", "provider,model,input_per_mtok,output_per_mtok\nopenai,gpt-4o,1,2,3\n", ["bad.csv: line 2", "more cells"]),
    ("bad.csv", "provider,model,input_per_mtok,output_per_mtok,tier_threshold_input_tokens\nopenai,x,1,2,200000\n",
     ["row 1 (line 2)", "tier_threshold_input_tokens needs input_above_per_mtok and output_above_per_mtok"]),
    ("bad.json", "{}", ["bad.json: unknown file type"]),
])
def test_bad_file_names_file_line_and_field(tmp_path, name, text, expected):
    path = write(tmp_path, name, text)
    with pytest.raises(PriceFileError) as error:
        build_catalog([path], seed=False)
    for part in expected:
        assert part in str(error.value), str(error.value)
    assert str(path) in str(error.value)


# --- discounts and the wire ------------------------------------------------------------------


def test_discount_wire_shape_key_and_precedence():
    everything = OrgDiscount(org_id="acme", discount_pct="5", effective_from="2026-01-01T00:00:00Z")
    openai = OrgDiscount(org_id="acme", provider="OpenAI", discount_pct=Decimal("12.5"), effective_from="2026-03-01T00:00:00Z")
    ended = OrgDiscount(org_id="acme", provider="openai", discount_pct=0, effective_from="2026-06-01T00:00:00Z")
    assert json.loads(openai.model_dump_json()) == {
        "schema_version": 1, "kind": "org_discount", "org_id": "acme", "provider": "openai",
        "discount_pct": "12.5", "effective_from": "2026-03-01T00:00:00.000Z", "source": "user"}
    assert openai.discount_id == "discount/acme/openai@2026-03-01T00:00:00.000Z"
    assert everything.discount_id == "discount/acme/*@2026-01-01T00:00:00.000Z"
    all_ = [everything, openai, ended]
    at = datetime(2026, 4, 1, tzinfo=UTC)
    assert discount_for(all_, "acme", "openai", at) is openai
    assert discount_for(all_, "acme", "anthropic", at) is everything
    assert discount_for(all_, "acme", "openai", datetime(2026, 2, 1, tzinfo=UTC)) is everything
    assert discount_for(all_, "other", "openai", at) is None
    assert discount_for(all_, "acme", "openai", datetime(2026, 7, 1, tzinfo=UTC)).apply(Decimal("2")) == Decimal("2")
    assert openai.apply(Decimal("2")) == Decimal("1.75")


def test_org_discount_schema_file_is_current():
    path = Path(__file__).resolve().parents[2] / "schemas" / "org_discount.schema.json"
    assert path.read_text() == schema_text(OrgDiscount), "regenerate: python -m yieldmeter_sdk.contracts"


def test_readme_discount_example_is_the_wire_shape():
    readme = (Path(__file__).resolve().parents[2] / "schemas" / "README.md").read_text()
    section = readme.split("## OrgDiscount", 1)[1]
    body = section.split("```json\n", 1)[1].split("```", 1)[0]
    discount = OrgDiscount.model_validate_json(body)
    assert json.loads(discount.model_dump_json()) == json.loads(body)


def test_messages_are_stable_and_keyed_by_history_id(tmp_path):
    path = write(tmp_path, "o.yaml", "prices:\n  - {provider: acme, model: m, input_per_mtok: 1, output_per_mtok: 2}\n"
                                     "discounts:\n  - {org_id: acme, discount_pct: 10}\n")
    first, second = list(build_catalog([path]).messages()), list(build_catalog([path]).messages())
    assert first == second
    keys = [key for key, _, _ in first]
    assert len(set(keys)) == len(keys)
    price = next(m for m in first if m[0] == "acme/m/default@1970-01-01T00:00:00.000Z")
    assert parse_price(price[1]).price_id == price[0] and price[2] == "price"
    assert first[-1][0] == "discount/acme/*@1970-01-01T00:00:00.000Z" and first[-1][2] == "org_discount"


def test_reserved_provider_name(tmp_path):
    path = write(tmp_path, "o.yaml", "prices:\n  - {provider: discount, model: m, input_per_mtok: 1, output_per_mtok: 2}\n")
    with pytest.raises(PriceFileError, match="reserved"):
        build_catalog([path], seed=False)


def test_cli_list_from_files():
    from yieldmeter.cli import app

    result = CliRunner().invoke(app, ["prices", "list", "--from-files", str(EXAMPLES / "overrides.example.yaml"),
                                      "-p", "openai", "-m", "gpt-4o-mini-2024-07-18", "--at", "2027-02-01"])
    assert result.exit_code == 0, result.output
    assert "Prices in force at 2027-02-01T00:00:00Z" in result.output
    row = next(line for line in result.output.splitlines() if "│ default" in line)
    assert "gpt-4o-mini" in row and "0.12" in row and "0.48" in row and "user" in row
    assert "acme" in result.output and "12.5" in result.output
