"""The seed: genai-prices' catalogue as PriceRecords, under every canonical provider name.

For every model of every genai-prices provider, genai-prices' own resolution
(``ModelInfo.get_prices``) is evaluated at every date its prices change (conditional prices
with start dates, dated variants), once per service tier it knows (:data:`SERVICE_TIERS`),
and each distinct result becomes one PriceRecord with that ``effective_from`` (1970-01-01
for the price that has always applied). What a PriceRecord cannot express is left out and
counted in :class:`SeedReport` (docs/pricing.md lists each with its reason).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from pydantic import ValidationError

from yieldmeter.contracts import EARLIEST_PRICE, PriceRecord
from yieldmeter.normalize import canonical_names, normalize_model

# genai-prices price variant (the request context it is selected by) -> UsageEvent.service_tier.
# "default" is the standard price; its context is sent too, because genai-prices lets a
# {'service_tier': 'default'} variant override it.
SERVICE_TIERS: dict[tuple[str, str], str] = {
    ("service_tier", "default"): "default",
    ("service_tier", "flex"): "flex",
    ("service_tier", "priority"): "priority",
    ("service_tier", "fast"): "fast",
    ("speed", "fast"): "fast",  # Anthropic's fast mode
    ("processing", "batch"): "batch",
}

# genai-prices price keys -> PriceRecord rate names. Everything else is counted as ignored.
_RATE_KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "output_reasoning_mtok": "reasoning",
}
_MIDNIGHT = time(0, tzinfo=UTC)



@dataclass
class SeedReport:
    """What the seed took from genai-prices and what it left out.

    Counts are of catalog entries, one per (provider name, model): a Gemini model counts
    once for each of gcp.gemini, gcp.vertex_ai and gcp.gen_ai.
    """

    records: int = 0
    models: set[tuple[str, str]] = field(default_factory=set)  # (provider, model)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> models not seeded
    ignored: Counter[str] = field(default_factory=Counter)  # genai-prices price key -> models priced without it
    notes: Counter[str] = field(default_factory=Counter)  # approximation -> models

    def lines(self) -> list[str]:
        names = len({provider for provider, _ in self.models})
        out = [f"{self.records} price records for {len(self.models)} (provider, model) entries on {names} provider names"]
        out += [f"skipped {n} entries: {why}" for why, n in sorted(self.skipped.items())]
        if self.ignored:
            out.append("price components left out (entries priced without them): " + ", ".join(f"{k} ({n})" for k, n in sorted(self.ignored.items())))
        out += [f"approximated in {n} entries: {why}" for why, n in sorted(self.notes.items())]
        return out


def _start(day: Any) -> datetime:
    return datetime.combine(day, _MIDNIGHT)


def _constraints(model: Any) -> list[Any]:
    prices = model.prices if isinstance(model.prices, list) else []
    return [c.constraint for c in prices] + [v.constraint for v in model.price_variants or ()]


def _change_dates(model: Any) -> list[datetime]:
    """Every instant at which genai-prices' answer for this model may change."""
    from genai_prices.types import StartDateConstraint

    starts = {_start(c.start_date) for c in _constraints(model) if isinstance(c, StartDateConstraint)}
    return sorted(starts | {EARLIEST_PRICE})


def _windows(model: Any) -> list[tuple[int, int]]:
    """genai-prices' daily windows of this model, as (start, end) seconds of the UTC day."""
    from genai_prices.types import TimeOfDateConstraint, _utc_timetz

    def seconds(value: time) -> int:
        value = _utc_timetz(value)  # private helper, genai-prices 0.2.3: the window's own UTC conversion
        return value.hour * 3600 + value.minute * 60 + value.second

    return sorted({
        (seconds(c.start_time), seconds(c.end_time))
        for c in _constraints(model) if isinstance(c, TimeOfDateConstraint)
    })


def _clock(second: int) -> str:
    return f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"


def _day_prices(model: Any, day: datetime, context: dict[str, str] | None) -> tuple[Any, list[tuple[str, str, Any]]]:
    """genai-prices' price on ``day``: the all-day price and its daily windows (start, end, price).

    The day is cut at every window boundary; each piece is priced at its start. The price in
    force longest is the all-day one; each run of pieces with another price is a window (a run
    through midnight is one window that wraps).
    """
    bounds = sorted({0} | {b for window in _windows(model) for b in window})
    if len(bounds) == 1:
        return model.get_prices(day, context), []
    pieces = [(start, end, model.get_prices(day + timedelta(seconds=start), context))
              for start, end in zip(bounds, bounds[1:] + [86400])]
    length: Counter[str] = Counter()
    for start, end, price in pieces:
        length[repr(price)] += end - start
    base_key = length.most_common(1)[0][0]
    base = next(price for _, _, price in pieces if repr(price) == base_key)
    runs: list[list[Any]] = []
    for start, end, price in pieces:
        if repr(price) == base_key:
            continue
        if runs and runs[-1][1] == start and repr(runs[-1][2]) == repr(price):
            runs[-1][1] = end
        else:
            runs.append([start, end, price])
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][1] == 86400 and repr(runs[0][2]) == repr(runs[-1][2]):
        runs[0][0] = runs.pop()[0]  # the last run goes on past midnight into the first
    return base, [(_clock(start), _clock(end % 86400), price) for start, end, price in runs]


def _variant_active(model: Any, when: dict[str, str], at: datetime) -> bool:
    return any(
        v.when == when and (v.constraint is None or v.constraint.active(at)) for v in model.price_variants or ()
    )


def _rate_fields(price: Any) -> dict[str, Any] | str:
    """PriceRecord rate fields of one genai-prices ModelPrice, or the reason it cannot be one."""
    from genai_prices.types import TieredPrices

    values = {k: v for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
    if "input_mtok" not in values and "output_mtok" not in values:
        return "no per-token input/output price"
    if "requests_kcount" in values:
        # Unlike a web-search or audio price, a per-request fee applies to every call: a
        # token-only price would under-charge all of them, so the model is left unpriced.
        return "per-request fee (a token-only price would under-charge every call)"
    rates = {_RATE_KEYS[k]: v for k, v in values.items() if k in _RATE_KEYS}
    rates.setdefault("input", Decimal(0))  # genai-prices: an unpriced unit costs nothing
    rates.setdefault("output", Decimal(0))  # embeddings have no output price
    tiered = {name: v for name, v in rates.items() if isinstance(v, TieredPrices)}
    fields = {f"{name}_per_mtok": v.base if isinstance(v, TieredPrices) else v for name, v in rates.items()}
    if tiered:
        starts = {v.tiers[0].start for v in tiered.values()}
        if len(starts) > 1:
            return "tiers of one model start at different input sizes"
        # PriceRecord has one threshold: a second tier is dropped (SeedReport notes it).
        fields["tier_threshold_input_tokens"] = starts.pop()
        for name, v in tiered.items():
            fields[f"{name}_above_per_mtok"] = v.tiers[0].price
        # PriceRecord needs both; an untiered input/output rate simply stays the same above.
        fields.setdefault("input_above_per_mtok", fields["input_per_mtok"])
        fields.setdefault("output_above_per_mtok", fields["output_per_mtok"])
    # A PriceRecord rate has 9 decimals (nano-dollars per million tokens). A few genai-prices
    # rates carry float artefacts (OpenRouter's 0.08333333333333334): rounded, they cost at most
    # 5e-16 USD per token more or less (SeedReport notes them).
    return {k: _nano(v) if isinstance(v, Decimal) else v for k, v in fields.items()}


_NANO = Decimal("1e-9")


def _nano(rate: Decimal) -> Decimal:
    return rate.quantize(_NANO, ROUND_HALF_EVEN) if rate.as_tuple().exponent < -9 else rate


def _all_prices(model: Any) -> list[Any]:
    prices = [c.prices for c in model.prices] if isinstance(model.prices, list) else [model.prices]
    return prices + [v.prices for v in model.price_variants or ()]


def _approximations(model: Any) -> tuple[set[str], list[str]]:
    """genai-prices price keys a PriceRecord leaves out, and the approximations made, for one model."""
    from genai_prices.types import TieredPrices

    ignored: set[str] = set()
    notes = []
    for price in _all_prices(model):
        ignored |= {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_") and k not in _RATE_KEYS}
        if any(isinstance(v, TieredPrices) and len(v.tiers) > 1 for v in price.__dict__.values()):
            notes.append("more than one context tier (only the first kept)")
        if any(isinstance(v, Decimal) and v.as_tuple().exponent < -9 for v in price.__dict__.values()):
            notes.append("a rate with more than 9 decimals rounded to 9")
    if "cache_write_1h_mtok" in ignored:
        notes.append("1-hour cache writes priced at the (5-minute) cache-write rate")
    return ignored, sorted(set(notes))


def seed_prices() -> tuple[list[PriceRecord], SeedReport]:
    """PriceRecords for every model of every provider in the installed genai-prices data, under
    each of the provider's canonical names (normalize.canonical_names).

    SeedReport counts are per catalog entry, i.e. per (provider name, model).
    """
    from genai_prices.data_snapshot import get_snapshot

    by_id = {p.id: p for p in get_snapshot().providers}
    report = SeedReport()
    records: dict[str, PriceRecord] = {}
    for gp_id, provider in by_id.items():
        names = canonical_names(gp_id)
        # Models another provider resells (Claude on Vertex, GPT on Azure) are priced by
        # genai-prices from the reseller's fallback providers, at the standard price only
        # (it applies no service-tier variant to them).
        models = [(m, True) for m in provider.models]
        own = {m.id for m in provider.models}
        for fallback in provider.fallback_model_providers or ():
            if fallback in by_id:
                models += [(m, False) for m in by_id[fallback].models if m.id not in own]
        for model, is_own in models:
            tiers: dict[str, dict[str, str] | None] = {"default": {"service_tier": "default"} if is_own else None}
            for variant in (model.price_variants or ()) if is_own else ():
                for item in variant.when.items():
                    if item in SERVICE_TIERS and SERVICE_TIERS[item] != "default":
                        tiers[SERVICE_TIERS[item]] = dict(variant.when)
            for name in names:
                if normalize_model(name, model.id) != model.id.lower():
                    # Another model of this provider claims the id first: no event ever
                    # normalises to it, so a record would be dead weight.
                    report.skipped[f"id resolves to another model on {name}"] += 1
                    continue
                new = _seed_model(model, name, tiers)
                if isinstance(new, str):
                    report.skipped[new] += 1
                    continue
                records.update((r.price_id, r) for r in new)
                report.models.add((name, model.id.lower()))
                ignored, notes = _approximations(model)
                report.ignored.update(ignored)
                report.notes.update(notes)
    report.records = len(records)
    return sorted(records.values(), key=lambda r: r.price_id), report


def _seed_model(model: Any, provider: str, tiers: dict[str, dict[str, str] | None]) -> list[PriceRecord] | str:
    """The records of one model on one provider name, or why it has none.

    At every date genai-prices' answer may change, the all-day price and the daily windows in
    force are published together (docs/pricing.md: a later record of the history ends the
    windows before it, so windows that go on are published again).
    """
    out: list[PriceRecord] = []
    reason = "no price"
    for tier, context in tiers.items():
        previous: Any = None
        for at in _change_dates(model):
            if tier != "default" and not _variant_active(model, context or {}, at):
                continue  # no price for this tier yet in genai-prices: the job falls back or marks unpriced
            base, windows = _day_prices(model, at, context)
            fields = _rate_fields(base)
            if isinstance(fields, str):
                reason = fields
                continue
            window_fields = [(start, end, _rate_fields(price)) for start, end, price in windows]
            window_fields = [(start, end, f) for start, end, f in window_fields if not isinstance(f, str)]
            state = (fields, window_fields)
            if state == previous:
                continue  # genai-prices changed something a PriceRecord does not carry
            previous = state
            try:
                out.append(PriceRecord(
                    provider=provider, model=model.id, service_tier=tier, effective_from=at,
                    source="genai-prices", **fields,
                ))
                out.extend(
                    PriceRecord(
                        provider=provider, model=model.id, service_tier=tier, effective_from=at, source="genai-prices",
                        time_of_day_start=start, time_of_day_end=end, **rates,
                    )
                    for start, end, rates in window_fields
                )
            except ValidationError as error:
                reason = f"rate outside PriceRecord's range ({error.errors()[0]['loc'][0]})"
    return out or reason
