"""Migrations and access on the real ClickHouse engine (chdb, in-process)."""

import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.conftest import make_settings
from yieldmeter.transform import dbt_dir, run_dbt
from yieldmeter.warehouse import (
    ENGINE_OPTIONS, Migration, WarehouseBusy, WarehouseError, applied_migrations, connect, load_migrations, migrate,
    open_warehouse, redact, rollback,
)

pytestmark = pytest.mark.integration


def tables(client) -> set[str]:
    return {row[0] for row in client.query("SHOW TABLES").result_rows}


def test_migrations_apply_once(warehouse_url):
    with open_warehouse(warehouse_url) as client:
        first = migrate(client)
        assert [m.version for m in first] == [m.version for m in load_migrations()]
        before = tables(client)
        assert {"schema_migrations", "dead_letters"} <= before
        assert migrate(client) == []  # running twice changes nothing
        assert tables(client) == before
        assert sorted(applied_migrations(client)) == [m.version for m in load_migrations()]


def test_the_embedded_engine_has_a_servers_background_threads(warehouse_url):
    """chdb's own default is 2 threads for merges and mutations (a server's is 16): the lightweight
    deletes of the incremental dbt models would queue behind merges."""
    with open_warehouse(warehouse_url) as client:
        size = client.query("SELECT value FROM system.server_settings WHERE name = 'background_pool_size'").result_rows
    assert ENGINE_OPTIONS["background_pool_size"] == 16 and size == [("16",)]


@pytest.mark.parametrize("threads", [1, 3])
def test_dbt_builds_with_the_threads_of_the_setting(tmp_path, threads):
    """dbt_threads (YIELDMETER_DBT_THREADS) reaches profiles.yml in every build, yieldmeter run's
    too: 1 keeps a full build's peak memory down on a small machine."""
    settings = make_settings(tmp_path / "state", dbt_threads=threads)
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
    assert run_dbt(settings, ["run", "--select", "stg_budgets"]).success
    log = (dbt_dir(settings) / "logs" / "dbt.log").read_text()
    assert f"Concurrency: {threads} threads (target='embedded')" in log


def test_changed_migration_is_refused_and_rollback_works(warehouse_url):
    create = Migration(1, "things", "CREATE TABLE things (a UInt8) ENGINE = MergeTree ORDER BY a;", "DROP TABLE things;")
    with open_warehouse(warehouse_url) as client:
        assert migrate(client, [create]) == [create]
        edited = Migration(1, "things", create.up.replace("UInt8", "UInt16"), create.down)
        with pytest.raises(WarehouseError, match="changed after it was applied"):
            migrate(client, [edited])
        assert rollback(client, 0, [create]) == [create]
        assert "things" not in tables(client)
        assert applied_migrations(client) == {}


def test_statement_splitting_ignores_comments():
    sql = "-- a comment; with a semicolon\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n\nSELECT ';';\n"
    assert Migration.statements(sql) == ["CREATE TABLE a (x UInt8) ENGINE = Memory", "SELECT ';'"]


def test_busy_folder_names_the_holder(tmp_path):
    url = f"chdb://{tmp_path / 'warehouse'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from yieldmeter.warehouse import connect
            client = connect({url!r})
            client.query("SELECT 1")
            print("ready", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseBusy) as busy:
            connect(url)
        assert busy.value.pid == holder.pid
        assert f"process {holder.pid}" in str(busy.value) and "YIELDMETER_CLICKHOUSE_URL" in str(busy.value)
    finally:
        holder.communicate("")
    with open_warehouse(url) as client:  # free again once the holder exited
        assert client.query("SELECT 1").result_rows == [(1,)]


def test_redact_hides_password():
    assert redact("https://ym:s3cret@ch.example:8443/db") == "https://ym:***@ch.example:8443/db"
    assert redact("chdb:///tmp/x") == "chdb:///tmp/x"


def test_calls_hourly_keeps_the_money_of_calls_to_the_last_digit(warehouse_url):
    """0007: the rollup sums cost_usd at the scale of calls (21 decimals), for the rows written
    before the migration (rebuilt from calls) and after it (the view), and rolls back."""
    columns = ["event_id", "occurred_at", "org_id", "team", "user_id", "app", "provider", "request_model",
               "response_model", "model", "operation", "service_tier", "input_tokens", "cache_read_tokens",
               "cache_write_tokens", "output_tokens", "reasoning_tokens", "session_key", "status", "tool_calls",
               "attributes", "pricing_status", "cost_usd", "source_topic", "source_partition", "source_offset",
               "schema_version", "_topic", "_partition", "_offset", "_timestamp"]
    at = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)

    def call(n: int, cost: str) -> list:
        return [f"e{n}", at, "acme", "support", "u1", "bot", "openai", "gpt-4o", "gpt-4o", "gpt-4o", "chat", "default",
                10, 0, 0, 5, 0, "acme/u1/bot", "ok", 0, {}, "priced", Decimal(cost), "usage.events", 0, n, 1,
                "usage.priced", 0, n, at]

    costs = ["0.000000000000123456789", "1.000000000000000000001"]  # 21 decimals, beyond the old 12
    with open_warehouse(warehouse_url) as client:
        migrations = load_migrations()
        migrate(client, [m for m in migrations if m.version < 7])
        client.insert("calls", [call(0, costs[0])], column_names=columns)
        migrate(client, [m for m in migrations if m.version <= 7])
        client.insert("calls", [call(1, costs[1])], column_names=columns)
        rollup = client.query("SELECT sum(cost_usd), sum(calls) FROM calls_hourly").result_rows[0]
        assert rollup == (sum(map(Decimal, costs)), 2)
        assert [m.version for m in rollback(client, 6, migrations)] == [7]
        assert client.query("SELECT toTypeName(cost_usd) FROM calls_hourly LIMIT 1").result_rows == [("Decimal(38, 12)",)]
