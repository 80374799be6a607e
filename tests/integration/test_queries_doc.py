"""Every query in docs/queries.md runs on a warehouse the real dbt project has built (read-only,
as `yieldmeter sql` runs it); the documented cost per successful outcome is the marts' own."""

import re

import pytest

from tests.conftest import make_settings
from tests.conftest import PROJECT_ROOT
from yieldmeter.transform import run_dbt
from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration

DOC = (PROJECT_ROOT / "docs" / "queries.md").read_text()
QUERIES = dict(re.findall(r"### (.*?)\n```sql\n(.*?)```", DOC, re.S))


def test_docs_hold_queries():
    assert len(QUERIES) >= 8


def test_every_documented_query_runs(tmp_path):
    settings = make_settings(tmp_path / "state")
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
    run = run_dbt(settings, ["build", "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test"])
    assert run.success, run.failures()
    with open_warehouse(settings.warehouse_url) as client:
        for title, query in QUERIES.items():
            try:
                client.query(query, settings={"readonly": 2})
            except Exception as error:
                raise AssertionError(f"{title}: {error}") from None


def test_the_documented_cost_per_outcome_is_the_marts_definition():
    from yieldmeter.transform import metric_sql

    query = QUERIES["Cost per successful outcome by app (the last 30 days of data)"]
    documented = metric_sql("cost_per_successful_outcome_usd", "spend_usd", "successful_outcomes", "unpriced_calls")
    assert " ".join(documented.split()).replace("and", "AND") in " ".join(query.split())
