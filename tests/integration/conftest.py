"""Fixtures shared by the integration tests (the session's broker and settings are in tests/conftest.py)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_settings
from yieldmeter.transform import dbt_dir, run_dbt
from yieldmeter.warehouse import migrate, open_warehouse


@pytest.fixture
def client(warehouse_url):
    """A fresh embedded warehouse with every migration applied, open for one test."""
    with open_warehouse(warehouse_url) as client:
        migrate(client)
        yield client


@pytest.fixture(scope="session")
def mart_ddl(tmp_path_factory):
    """mart_ddl("budget_status") -> CREATE TABLE with the columns and types of the mart's enforced dbt
    contract (from the manifest `dbt parse` writes), so a test's stand-in for a mart cannot drift
    from what `dbt build` creates."""
    settings = make_settings(tmp_path_factory.mktemp("dbt-parse"))
    parsed = run_dbt(settings, ["parse"])
    assert parsed.success, parsed.failures()
    nodes = json.loads((dbt_dir(settings) / "target" / "manifest.json").read_text())["nodes"]

    def ddl(name: str) -> str:
        node = nodes[f"model.yieldmeter.{name}"]
        assert node["config"]["contract"]["enforced"], f"{name} has no enforced contract"
        columns = ", ".join(f"`{c}` {spec['data_type']}" for c, spec in node["columns"].items())
        return f"CREATE TABLE {name} ({columns}) ENGINE = MergeTree ORDER BY tuple()"

    return ddl
