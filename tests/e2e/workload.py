"""The simulator's seeded workload through the real chain, into an embedded warehouse.

prices (genai-prices seed + one org discount) -> usage.prices; simulate -> usage.events and
usage.outcomes (producer SDK); the Flink pipeline job, bounded; the warehouse ingest until
caught up. Then, like a vendor correcting a rate after the fact, one price is republished with
a new rate for the period already charged, and ingested: the repricing audit must find it.
Every step is the component the product runs, on fresh topics named for this run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from yieldmeter import budgets
from tests.conftest import PROJECT_ROOT
from yieldmeter.config import Settings
from yieldmeter.contracts import PriceRecord
from yieldmeter.ingest import WarehouseIngest
from yieldmeter.pipeline_jobs import run_pipeline
from yieldmeter.prices import Catalog, OrgDiscount, build_catalog, in_force, publish
from yieldmeter.simulate import KafkaSink, SimulationOptions, simulate
from yieldmeter.topics import ensure_topics
from yieldmeter.warehouse import migrate, open_warehouse

# 40k calls over two weeks: every planted behaviour shows, and the chain runs in about a minute.
OPTIONS = SimulationOptions(events=40_000, days=14, seed=42)
DISCOUNT = OrgDiscount(org_id="acme", provider="anthropic", discount_pct=Decimal("12.5"),
                       effective_from=datetime(2026, 1, 1, tzinfo=UTC))
CORRECTED = ("anthropic", "claude-3-5-haiku-latest", "default")  # the price republished with a new rate
CORRECTION_FACTOR = Decimal("1.2")


@dataclass
class Correction:
    before: PriceRecord
    after: PriceRecord


EXAMPLE_BUDGETS = PROJECT_ROOT / "infra" / "budgets.example.yaml"


def fresh_topic_settings(settings: Settings) -> Settings:
    """The same settings with a fresh set of topics (one namespace per run)."""
    run = uuid.uuid4().hex[:8]
    names = {f"topic_{key}": f"e2e.{run}.{key}" for key in settings.topics}
    return settings.model_copy(update=names)


def _ingest(settings: Settings) -> None:
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
        ingest = WarehouseIngest(settings, client, group_id=f"warehouse-{settings.topic_events}")
        try:
            ingest.run(until_caught_up=True)
        finally:
            ingest.close()


def build_warehouse(settings: Settings, manifest_path: Path, options: SimulationOptions = OPTIONS) -> dict:
    """Run the chain for ``options`` into ``settings.warehouse_url``; return the manifest."""
    ensure_topics(settings)
    catalog = build_catalog()
    catalog.discounts[DISCOUNT.discount_id] = DISCOUNT
    publish(catalog, settings)
    budgets.publish(budgets.load_budget_file(EXAMPLE_BUDGETS), settings)  # what dbt's budget marts read
    manifest = simulate(options, KafkaSink(settings, manifest_path=manifest_path))
    run_pipeline(settings, timeout_s=900, group_id=f"pipeline-{settings.topic_events}")
    _ingest(settings)
    return manifest


def correct_a_price(settings: Settings, at: datetime) -> Correction:
    """Republish the price of CORRECTED in force at ``at`` (same price_id) with a higher input rate."""
    key = "/".join(CORRECTED)
    (before,) = [p for p in in_force(build_catalog().prices.values(), at) if p.key == key]
    after = before.model_copy(update={"input_per_mtok": before.input_per_mtok * CORRECTION_FACTOR, "source": "user"})
    publish(Catalog(prices={after.price_id: after}), settings)
    _ingest(settings)
    return Correction(before, after)
