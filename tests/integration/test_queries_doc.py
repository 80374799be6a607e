"""Every query in docs/queries.md runs on a migrated warehouse (read-only, as `yieldmeter sql` runs it)."""

import re

import pytest

from yieldmeter.config import PROJECT_ROOT
from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration

QUERIES = re.findall(r"```sql\n(.*?)```", (PROJECT_ROOT / "docs" / "queries.md").read_text(), re.S)


def test_docs_hold_queries():
    assert len(QUERIES) >= 8


def test_every_documented_query_runs(warehouse_url):
    with open_warehouse(warehouse_url) as client:
        migrate(client)
        for query in QUERIES:
            client.query(query, settings={"readonly": 2})
