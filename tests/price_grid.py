"""The conformance grid: calls over genai-prices' whole catalogue, priced by genai-prices itself.

For every (provider, model) genai-prices prices, under each spelling producers use for the
provider, calls with plain, cached and reasoning tokens and, where the model has a context tier,
just at and above it, on every service tier it knows (and one it does not, which falls back),
at instants on both sides of every dated price change and inside and outside every daily
window. The oracle is `genai_prices.calc_price`; the documented differences (docs/pricing.md,
"What genai-prices prices that yieldmeter does not") are named by `expected_difference`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from yieldmeter.normalize import PROVIDER_SPELLINGS, canonical_names
from yieldmeter.prices.seed import SERVICE_TIERS

TOLERANCE = Decimal("1e-9")
RECENT = datetime(2026, 11, 20, tzinfo=UTC)  # a day inside today's prices, for the daily windows


@dataclass(frozen=True)
class Call:
    provider: str  # as a producer sends it
    model: str
    service_tier: str
    context: dict[str, str] | None  # genai-prices' price context for the same call
    at: datetime
    input_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    gp_provider: str

    def tsv(self, org_id: str = "conformance") -> str:
        at = self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        counts = (self.input_tokens, self.cache_read_tokens, self.cache_write_tokens, self.output_tokens, self.reasoning_tokens)
        return "\t".join([self.provider, self.model, self.service_tier, org_id, at, *map(str, counts)])


def spellings(gp_id: str) -> list[str]:
    """Every way a producer may name this genai-prices provider: its canonical names, its own id,
    and the gateway spellings that map to one of them."""
    names = list(canonical_names(gp_id))
    out = names + ([gp_id] if gp_id not in names else [])
    out += sorted(s for s, canonical in PROVIDER_SPELLINGS.items() if canonical in names and s not in out)
    return out


def _instants(model: Any) -> list[datetime]:
    from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

    constraints = [c.constraint for c in model.prices] if isinstance(model.prices, list) else []
    constraints += [v.constraint for v in model.price_variants or ()]
    out = {RECENT + timedelta(hours=12)}
    for c in constraints:
        if isinstance(c, StartDateConstraint):
            start = datetime.combine(c.start_date, time(0, tzinfo=UTC))
            out |= {start - timedelta(milliseconds=1), start}
        elif isinstance(c, TimeOfDateConstraint):
            for clock in (c.start_time, c.end_time):
                edge = datetime.combine(RECENT.date(), clock if clock.tzinfo else clock.replace(tzinfo=UTC)).astimezone(UTC)
                out |= {edge - timedelta(seconds=1), edge}
    return sorted(out)


def _tiers(model: Any, own: bool) -> dict[str, dict[str, str] | None]:
    """Service tier as sent -> genai-prices context, as the seed reads them; plus a tier the
    model has no price for ('flex' or 'priority'), which falls back to the default tier."""
    tiers: dict[str, dict[str, str] | None] = {"default": {"service_tier": "default"} if own else None}
    for variant in (model.price_variants or ()) if own else ():
        for item in variant.when.items():
            if item in SERVICE_TIERS and SERVICE_TIERS[item] != "default":
                tiers[SERVICE_TIERS[item]] = dict(variant.when)
    unknown = "flex" if "flex" not in tiers else "priority" if "priority" not in tiers else None
    if unknown:
        tiers[unknown] = {"service_tier": unknown} if own else None
    return tiers


def _thresholds(model: Any) -> set[int]:
    from genai_prices.types import TieredPrices

    prices = [c.prices for c in model.prices] if isinstance(model.prices, list) else [model.prices]
    prices += [v.prices for v in model.price_variants or ()]
    return {v.tiers[0].start for p in prices for v in p.__dict__.values() if isinstance(v, TieredPrices)}


def _usages(model: Any) -> list[tuple[int, int, int, int, int]]:
    """(input, cache_read, cache_write, output, reasoning)"""
    out = [(1_200, 0, 0, 350, 0), (50_000, 30_000, 5_000, 4_000, 1_500)]
    for threshold in sorted(_thresholds(model)):
        out += [(threshold, threshold // 2, 0, 2_000, 500), (threshold + 1, threshold // 2, 1_000, 2_000, 500)]
    return out


def calls() -> Iterator[Call]:
    from genai_prices.data_snapshot import get_snapshot

    for provider in get_snapshot().providers:
        names = spellings(provider.id)
        n = 0
        for model in provider.models:
            for tier, context in _tiers(model, own=True).items():
                for at in _instants(model):
                    for usage in _usages(model):
                        yield Call(names[n % len(names)], model.id, tier, context, at, *usage, gp_provider=provider.id)
                        n += 1


def oracle(call: Call) -> tuple[Decimal | None, str | None]:
    """genai-prices' total price of the call and the model it priced, or (None, why) when it
    prices none."""
    from genai_prices import Usage, calc_price

    usage = Usage(
        input_tokens=call.input_tokens, cache_read_tokens=call.cache_read_tokens,
        cache_write_tokens=call.cache_write_tokens, output_tokens=call.output_tokens,
        output_reasoning_tokens=call.reasoning_tokens,
    )
    try:
        result = calc_price(usage, call.model, provider_id=call.gp_provider, genai_request_timestamp=call.at,
                            price_context=call.context)
    except LookupError as error:
        return None, str(error)
    return result.total_price, result.model.id


def expected_difference(call: Call, genai_model: str | None) -> str | None:
    """The documented reason yieldmeter's price of this call may differ from genai-prices', if any
    (docs/pricing.md lists them); None: they must agree to TOLERANCE."""
    from genai_prices.data_snapshot import get_snapshot
    from genai_prices.types import TieredPrices

    snapshot = get_snapshot()
    provider = next(p for p in snapshot.providers if p.id == call.gp_provider)
    if genai_model and genai_model.startswith("Unable to find model"):
        # genai-prices quirk: this model's own match rule misses its id (fireworks'
        # deepseek-r1-0528, 'ft:gpt-4o' ...); yieldmeter prices it from the catalogue entry.
        return "calc_price does not resolve the model's own id"
    model = provider.find_model(genai_model or call.model, all_providers=snapshot.providers) if genai_model else None
    if model is None:
        return None
    price = model.get_prices(call.at, call.context)
    keys = {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
    if "requests_kcount" in keys:
        return "per-request fee: left unpriced"
    if "input_mtok" not in keys and "output_mtok" not in keys:
        return "no per-token price: left unpriced"
    tiered = [v for v in price.__dict__.values() if isinstance(v, TieredPrices)]
    if any(len(v.tiers) > 1 and call.input_tokens > v.tiers[1].start for v in tiered):
        return "above a second context tier: priced at the first"
    return None
