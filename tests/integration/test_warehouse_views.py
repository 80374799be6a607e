"""Every materialized view's columns match its target table.

A view inserts into its TO table by column name: a column the view names differently lands
nowhere, and the target's column silently takes its default. So every SELECT column must
exist in the target with the same type, and every target column without a default must be
filled by the view.
"""

import re

import pytest

from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration


def test_materialized_views_match_their_targets(warehouse_url):
    with open_warehouse(warehouse_url) as client:
        migrate(client)
        views = client.query(
            "SELECT name, as_select, create_table_query FROM system.tables "
            "WHERE database = currentDatabase() AND engine = 'MaterializedView'"
        ).result_rows
        assert views, "no materialized views found"
        for name, select, create in views:
            target = re.search(r"\bTO\s+(?:`?\w+`?\.)?`?(\w+)`?", create).group(1)
            produced = {row[0]: row[1] for row in client.query(f"DESCRIBE ({select})").result_rows}
            columns = client.query(f"DESCRIBE TABLE {target}").result_rows
            expected = {row[0]: row[1] for row in columns}
            required = {row[0] for row in columns if not row[2]}  # default_type empty: no default
            assert set(produced) <= set(expected), f"{name}: not in {target}: {set(produced) - set(expected)}"
            assert required <= set(produced), f"{name}: {target} columns left to defaults: {required - set(produced)}"
            mismatched = {c: (produced[c], expected[c]) for c in produced if produced[c] != expected[c]}
            assert not mismatched, f"{name}: types differ from {target}: {mismatched}"
