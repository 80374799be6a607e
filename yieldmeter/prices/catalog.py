"""The catalog: prices by price_id and discounts by discount_id, and which apply to a call."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from yieldmeter.contracts import DISCOUNT_PREFIX, OrgDiscount, PriceRecord, to_json_bytes
from yieldmeter.prices.files import PriceFileError, read_price_file
from yieldmeter.prices.seed import SeedReport, seed_prices



@dataclass
class Catalog:
    """Prices by price_id and discounts by discount_id: exactly what the topic holds, one per key."""

    prices: dict[str, PriceRecord] = field(default_factory=dict)
    discounts: dict[str, OrgDiscount] = field(default_factory=dict)
    replaced: int = 0  # user prices that replaced a seed price with the same key and effective_from
    seed: SeedReport | None = None

    def add_price(self, record: PriceRecord) -> None:
        old = self.prices.get(record.price_id)
        if old is not None and old.source == "genai-prices" and record.source == "user":
            self.replaced += 1
        self.prices[record.price_id] = record

    def messages(self) -> Iterator[tuple[str, bytes, str]]:
        """(key, value, kind) in a stable order: loading the same catalog twice sends the same bytes."""
        for key in sorted(self.prices):
            yield key, to_json_bytes(self.prices[key]), "price"
        for key in sorted(self.discounts):
            yield key, to_json_bytes(self.discounts[key]), "org_discount"


def build_catalog(files: Iterable[Path | str] = (), *, seed: bool = True) -> Catalog:
    """The seed (unless ``seed=False``), then each file in order; later records win on equal keys."""
    catalog = Catalog()
    if seed:
        records, catalog.seed = seed_prices()
        for record in records:
            catalog.add_price(record)
    for path in files:
        user = read_price_file(path)
        for record in user.prices:
            if record.key.startswith(DISCOUNT_PREFIX):
                raise PriceFileError(f"{path}: provider 'discount' is reserved for discount keys on the prices topic")
            catalog.add_price(record)
        for discount in user.discounts:
            catalog.discounts[discount.discount_id] = discount
    return catalog


def in_force(records: Iterable[Any], at: datetime) -> list[Any]:
    """Per key, the record with the latest effective_from not after ``at``."""
    best: dict[str, Any] = {}
    for record in records:
        if record.effective_from <= at:
            current = best.get(record.key)
            if current is None or record.effective_from > current.effective_from:
                best[record.key] = record
    return [best[k] for k in sorted(best)]


def price_for(prices: Iterable[PriceRecord], provider: str, model: str, service_tier: str, at: datetime) -> PriceRecord | None:
    """The price in force for a call (docs/pricing.md): the latest effective record of the call's
    provider, model and tier that applies at ``at`` (a windowed one wins a tie), else the same on
    the default tier; None when the call is unpriced. The reference the job is tested against."""

    def best(tier: str) -> PriceRecord | None:
        candidates = [
            p for p in prices
            if p.service_tier == tier and p.model == model and p.provider == provider and p.applies_at(at)
        ]
        return max(candidates, key=lambda p: (p.effective_from, p.time_of_day_start is not None), default=None)

    return best(service_tier) or (best("default") if service_tier != "default" else None)


def discount_for(discounts: Iterable[OrgDiscount], org_id: str, provider: str, at: datetime) -> OrgDiscount | None:
    """The discount applying to a call of ``org_id`` on ``provider`` at ``at`` (see OrgDiscount)."""
    current = {d.provider: d for d in in_force((d for d in discounts if d.org_id == org_id), at)}
    return current.get(provider) or current.get(None)

