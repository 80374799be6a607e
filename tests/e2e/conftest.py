"""One simulated fortnight through Kafka, Flink and the warehouse ingest, then `dbt build` on it:
built once per test session (the Flink start-up and the run take about a minute), shared by
the dbt tests. Figures the tests measure (tokenmaxxing precision and recall) are printed at the
end of the run, whatever pytest's output capture."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pytest

from tests.conftest import FIGURES, make_settings
from tests.e2e.workload import Correction, build_warehouse, correct_a_price, fresh_topic_settings
from yieldmeter.config import Settings
from yieldmeter.transform import DbtRun, transform


@dataclass
class ValueWarehouse:
    settings: Settings
    manifest: dict
    correction: Correction
    build: DbtRun  # `yieldmeter transform` (dbt build) on it


@pytest.fixture(scope="session")
def value_warehouse(kafka, tmp_path_factory) -> ValueWarehouse:
    state = tmp_path_factory.mktemp("value-state")
    settings = fresh_topic_settings(make_settings(state, kafka_bootstrap=kafka.bootstrap_servers, flink_parallelism=2))
    manifest = build_warehouse(settings, state / "manifest.json")
    start = datetime.fromisoformat(manifest["options"]["start"])
    correction = correct_a_price(settings, start)
    return ValueWarehouse(settings, manifest, correction, transform(settings))


@pytest.fixture(scope="session")
def figures() -> list[str]:
    """Lines to print in the run's summary."""
    return FIGURES
