"""Incremental builds equal full builds (dbt/README.md, "Incremental builds"), on the real ClickHouse
engine and real dbt runs: a first build, then incremental builds after late calls (one extends a
session, one bridges two sessions, one starts its own), late outcomes, re-delivered calls,
outcomes and sessions, an outcome delivered again with another verdict or on another day, a call
delivered again under another session id, an outcome taken by a later session of another key, a
price published for calls stored unpriced, a back-dated discount, an app whose outcome type
changes, a build that does not finish and a --select build of marts without their scope. After
the first incremental build, after the repricing and at the end, every row of every incremental
model must be what a `--full-refresh` of the same data gives (a build that rebuilds every key, as
the unfinished ones cause, would otherwise hide what the builds before it got wrong).

Rows are inserted as the ingest stores them (test_repricing's helpers); `_ingested_at` is the
insert time, which is what the incremental builds read. The look-back margin is 0 here, so each
incremental build sees only what was inserted after the build before it.
"""

from __future__ import annotations

import itertools
import re
import shutil
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tests.conftest import free_port, make_settings
from tests.integration.test_repricing import (
    BACKDATED, MODELS, NEW_PRICE, SEEDED_AT, expected_pricing, publish, store_calls, stream_call, usage,
)
from yieldmeter import transform
from yieldmeter.cli import app, run as cli_run
from yieldmeter.cli.run import transform_hook
from yieldmeter.prices import build_catalog, price_for
from yieldmeter.runner import RunState
from yieldmeter.transform import ScheduledBuilds, run_dbt
from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
APPS = {"support-bot": "ticket_resolved", "coding-agent": "pr_merged", "sales-assistant": "lead_qualified"}
INCREMENTAL = ["int_changed_keys", "int_rebuild_scope", "int_session_fragments", "int_calls_sessionized",
               "int_sessions_merged", "int_outcome_attribution", "fct_calls", "fct_sessions",
               "fct_outcome_attributions", "fct_outcomes", "value_metrics_daily", "tokenmaxxing_signals",
               "focus_ai_spend"]
# the incremental models and what they read (the ledger is built after all of them)
SELECT = ["--select", "+int_incremental_builds"]
VARS = ["--vars", "{incremental_lookback_minutes: 0}"]
_events = itertools.count()


class Warehouse:
    """The calls, sessions and outcomes the ingest would store, written batch by batch."""

    def __init__(self, client):
        self.client, self.prices = client, [p for p in build_catalog().prices.values() if (p.provider, p.model) in MODELS]
        self.rows: dict[str, dict] = {}

    def calls(self, org: str, user: str, app: str, start: datetime, n: int, model: int,
              session_id: str = "", late: bool = False) -> list[str]:
        """n calls a minute apart, priced by the stream as of the catalog it had (none for acme-llm-1)."""
        provider, name = MODELS[model % 3]
        key = f"{org}/{session_id}" if session_id else f"{org}/{user}/{app}"
        rows = []
        for c in range(n):
            event_id, at = f"e{next(_events)}", start + timedelta(minutes=c)
            use = usage(input_tokens=1500 + 311 * c, cache_read_tokens=200 * c, output_tokens=250 + 13 * c)
            pricing = expected_pricing(price_for(self.prices, provider, name, "default", at), None, use)
            row = stream_call(event_id, at, org, provider, name, "default", use, pricing, team=f"{app}-team",
                              user_id=user, app=app, session_id=session_id, session_key=key)
            row |= {"trace_id": f"t-{key}-{start:%d%H%M}" if app == "coding-agent" else "", "is_late": late}
            rows.append(row)
        store_calls(self.client, rows)
        self.rows |= {r["event_id"]: r for r in rows}
        return [r["event_id"] for r in rows]

    def fragment(self, event_ids: list[str], correction: bool = False) -> None:
        """The session the pipeline closed over these calls, or a late call's correction."""
        uid = "lower(hex(MD5(concat('late|', any(event_id)))))" if correction else \
            "lower(hex(MD5(concat(any(session_key), '|', toString(min(occurred_at))))))"
        self.client.command(f"""
            INSERT INTO sessions (session_uid, session_key, is_correction, org_id, team, user_id, app, session_id,
                started_at, ended_at, calls, errors, cancelled, retries, unpriced_calls, input_tokens,
                cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens, tool_calls, max_input_tokens,
                models_used, list_cost_usd, cost_usd, _topic, _partition, _offset, _timestamp)
            SELECT {uid}, any(session_key), {str(correction).lower()}, any(org_id), any(team), any(user_id), any(app),
                any(session_id), min(occurred_at), max(occurred_at), count(), 0, 0, 0,
                countIf(pricing_status != 'priced'), sum(input_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
                sum(output_tokens), sum(reasoning_tokens), 0, max(input_tokens), groupUniqArray(model),
                sum(list_cost_usd), sum(cost_usd), 'usage.sessions', 0, 0, max(occurred_at)
            FROM calls FINAL WHERE event_id IN ({", ".join(f"'{e}'" for e in event_ids)})""")

    def outcome(self, outcome_id: str, at: datetime, org: str, user: str, app: str, kind: str | None = None,
                session_id: str = "", trace_id: str = "", success: bool = True) -> None:
        self.client.command(f"""
            INSERT INTO outcomes (outcome_id, occurred_at, org_id, team, user_id, app, session_id, trace_id,
                outcome_type, success, value_usd, attributes, schema_version, _topic, _partition, _offset, _timestamp)
            VALUES ('{outcome_id}', '{at:%Y-%m-%d %H:%M:%S}', '{org}', '{app}-team', '{user}', '{app}', '{session_id}',
                '{trace_id}', '{kind or APPS[app]}', {str(success).lower()}, {'100' if app == 'sales-assistant' else 'NULL'},
                map(), 1, 'usage.outcomes', 0, 0, now64(3))""")

    def day(self, day: int) -> None:
        """Each org's users on each app: a session at 09:00 and one at 09:40 (four calls each, so 37
        minutes apart: more than the 30-minute gap), on rotating models, with their outcomes (the
        support bot's and the sales assistant's second sessions stay idle)."""
        for o, org in enumerate(["acme", "globex"]):
            for u, app in itertools.product(range(2), APPS):
                user = f"{org}-u{u}"
                for s, at in enumerate([DAY0 + timedelta(days=day, hours=9), DAY0 + timedelta(days=day, hours=9, minutes=40)]):
                    sid = f"{user}-{app}-d{day}s{s}" if app == "support-bot" else ""
                    calls = self.calls(org, user, app, at, 4, model=o + u + s + day, session_id=sid)
                    self.fragment(calls)
                    done = at + timedelta(minutes=3 + 5 + 5 * s)
                    if app == "support-bot" and s == 0:
                        self.outcome(f"o-{sid}", done, org, user, app, session_id=sid, success=u == 0)
                    elif app == "coding-agent":
                        self.outcome(f"o-{calls[0]}", done, org, user, app, trace_id=self.rows[calls[0]]["trace_id"])
                    elif s == 0:
                        self.outcome(f"o-{calls[0]}", done, org, user, app)


# the data tests of the incremental models as yieldmeter run's scheduled builds run them (on the
# rows each build rebuilt); cautious: not the tests of marts this selection does not build
SCHEDULED_TESTS = ["--exclude-resource-type", "unit_test", "--exclude", "tag:full_history", "--indirect-selection", "cautious"]


def build(settings, *args: str, tests: bool = True) -> None:
    """The incremental models (and their scheduled tests), the project parsed once as yieldmeter run does."""
    command = ["build", *SELECT, *SCHEDULED_TESTS] if tests else ["run", *SELECT]
    run = run_dbt(settings, [*command, *VARS, *args], keep_manifest=True)
    assert run.success, run.failures()
    assert not tests or any(r.node.resource_type == "test" for r in run.results)


def snapshot(settings) -> dict[str, list[tuple]]:
    with open_warehouse(settings.warehouse_url) as client:
        return {m: sorted(map(repr, client.query(f"SELECT * FROM {m}").result_rows))
                for m in INCREMENTAL[2:]}


def assert_equals_a_full_build(settings) -> None:
    """Every row of every incremental model is what a --full-refresh of the same data gives (the
    next incremental builds then start from that one)."""
    incremental = snapshot(settings)
    build(settings, "--full-refresh", tests=False)
    full = snapshot(settings)
    for model in full:
        assert incremental[model] == full[model], model


def first_build(tmp_path, days: int) -> tuple:
    """A migrated warehouse with the catalog and `days` days of traffic, built once."""
    settings = make_settings(tmp_path / "state")
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
        w = Warehouse(client)
        publish(client, w.prices, SEEDED_AT)
        for day in range(days):
            w.day(day)
    build(settings)
    return settings, w


def test_incremental_builds_equal_a_full_build(tmp_path):
    settings, w = first_build(tmp_path, days=2)

    with open_warehouse(settings.warehouse_url) as client:
        w.client = client
        w.day(2)
        # late calls: one bridges acme-u0's two coding sessions of day 0, one extends globex-u0's
        # second sales session of day 1, one is a session of its own
        for args in [("acme", "acme-u0", "coding-agent", DAY0 + timedelta(hours=9, minutes=20)),
                     ("globex", "globex-u0", "sales-assistant", DAY0 + timedelta(days=1, hours=9, minutes=55)),
                     ("acme", "acme-u1", "sales-assistant", DAY0 + timedelta(hours=15))]:
            w.fragment(w.calls(*args, 1, model=0, late=True), correction=True)
        # late outcomes: the idle sales session of globex-u1 on day 0 closes a lead, and a support
        # session of day 1 (a key with no new call, and none repriced later) resolves its ticket
        w.outcome("o-late-1", DAY0 + timedelta(hours=10, minutes=5), "globex", "globex-u1", "sales-assistant")
        w.outcome("o-late-2", DAY0 + timedelta(days=1, hours=11), "acme", "acme-u1", "support-bot",
                  session_id="acme-u1-support-bot-d1s1")
        # re-delivered: calls, an outcome and a closed session, stored a second time
        store_calls(client, list(w.rows.values())[:7])
        w.outcome("o-acme-u0-support-bot-d0s0", DAY0 + timedelta(hours=9, minutes=8), "acme", "acme-u0",
                  "support-bot", session_id="acme-u0-support-bot-d0s0")
        w.fragment(list(w.rows)[4:8])
        # an outcome without a link: acme-u0's idle support session of 09:40 on day 2 gets it (user and time)
        w.outcome("o-move", DAY0 + timedelta(days=2, hours=16), "acme", "acme-u0", "support-bot")
    build(settings)

    with open_warehouse(settings.warehouse_url) as client:
        scoped, keys = client.query("SELECT (SELECT countIf(kind = 'session_key') FROM int_rebuild_scope), "
                                    "(SELECT uniqExact(session_key) FROM fct_calls)").result_rows[0]
        assert 0 < scoped < keys  # the build rebuilt some session keys, not all of them
    assert_equals_a_full_build(settings)

    with open_warehouse(settings.warehouse_url) as client:
        w.client = client
        # repricing: acme-llm-1's first price (its calls were stored unpriced) and a discount for
        # globex back-dated to November
        publish(client, [NEW_PRICE, BACKDATED], datetime.now(UTC))
        # the sales assistant of globex now reports meetings more than leads: its idle sessions change type
        for i in range(8):
            w.outcome(f"o-meeting-{i}", DAY0 + timedelta(days=2, hours=12 + i), "globex", "nobody",
                      "sales-assistant", kind="meeting_booked")
        store_calls(client, list(w.rows.values())[-3:])
        # a later support session of acme-u0 (a key of its own) takes o-move from the 09:40 one, whose
        # key changes in no other way; and a support outcome of day 1 comes again, now failed
        w.fragment(w.calls("acme", "acme-u0", "support-bot", DAY0 + timedelta(days=2, hours=14), 2, model=1,
                           session_id="acme-u0-support-bot-d2s2"))
        w.outcome("o-acme-u0-support-bot-d1s0", DAY0 + timedelta(days=1, hours=9, minutes=8), "acme", "acme-u0",
                  "support-bot", session_id="acme-u0-support-bot-d1s0", success=False)
    build(settings)
    assert_equals_a_full_build(settings)

    # a build that gets past int_rebuild_scope and does not finish (here a --select build; a failed
    # test does the same) leaves marts that the next build cannot compare with: that one rebuilds every key
    with open_warehouse(settings.warehouse_url) as client:
        w.client = client
        w.outcome("o-late-3", DAY0 + timedelta(days=2, hours=10), "globex", "globex-u0", "support-bot",
                  session_id="globex-u0-support-bot-d2s0")
    partial = run_dbt(settings, ["run", "--select", "+fct_outcomes", *VARS])
    assert partial.success, partial.failures()
    build(settings)
    with open_warehouse(settings.warehouse_url) as client:
        scoped, keys = client.query("SELECT (SELECT countIf(kind = 'session_key') FROM int_rebuild_scope), "
                                    "(SELECT uniqExact(session_key) FROM fct_calls)").result_rows[0]
    assert scoped == keys

    # a --select build of marts that leaves int_rebuild_scope out rebuilds them for the last build's
    # scope: o-late-3 comes again under globex-u0's support session of day 1, and fct_outcomes moves
    # it there before a build compared it with the marts. The marts' pre-hook marks that build
    # unfinished, so the next one rebuilds every key and the session o-late-3 left no longer counts it.
    with open_warehouse(settings.warehouse_url) as client:
        w.client = client
        w.outcome("o-late-3", DAY0 + timedelta(days=2, hours=10), "globex", "globex-u0", "support-bot",
                  session_id="globex-u0-support-bot-d1s0")
    marts = run_dbt(settings, ["run", "--select", "int_changed_keys", "int_outcome_attribution",
                               "fct_outcome_attributions", "fct_outcomes", *VARS])
    assert marts.success, marts.failures()
    build(settings)
    with open_warehouse(settings.warehouse_url) as client:
        scoped, keys = client.query("SELECT (SELECT countIf(kind = 'session_key') FROM int_rebuild_scope), "
                                    "(SELECT uniqExact(session_key) FROM fct_calls)").result_rows[0]
        held = client.query("SELECT session_id, outcomes FROM fct_sessions WHERE session_id IN "
                            "('globex-u0-support-bot-d1s0', 'globex-u0-support-bot-d2s0') ORDER BY session_id").result_rows
    assert scoped == keys
    assert held == [("globex-u0-support-bot-d1s0", 2), ("globex-u0-support-bot-d2s0", 1)]  # their own and o-late-3

    # an outcome no session holds comes again a day earlier: the day it left is rebuilt too; and a
    # call comes again under another session id: its old key loses it
    with open_warehouse(settings.warehouse_url) as client:
        w.client = client
        w.outcome("o-meeting-0", DAY0 + timedelta(days=1, hours=12), "globex", "nobody", "sales-assistant",
                  kind="meeting_booked")
        moved = next(r for r in w.rows.values() if r["session_id"])
        store_calls(client, [moved | {"session_id": "moved", "session_key": f"{moved['org_id']}/moved"}])
    # the session the call left still counts it (the pipeline sent no correction of it): its calls,
    # cost and tokens no longer reconcile with fct_calls, and the scheduled tests find it among the
    # rows this build rebuilt
    build(settings, tests=False)
    checked = run_dbt(settings, ["test", *SELECT, *SCHEDULED_TESTS, *VARS], keep_manifest=True)
    failures = dict(f.removeprefix("test ").split(": ", 1) for f in checked.failures())
    assert sorted(failures) == ["fct_sessions_reconciles_with_calls", "fct_sessions_row_rules"]
    assert "Got 1 result" in failures["fct_sessions_row_rules"]  # calls = stored_calls; its other rules hold
    assert "Got 2 results" in failures["fct_sessions_reconciles_with_calls"]  # cost and tokens; late calls agree

    assert_equals_a_full_build(settings)  # (without its tests: that session fails the same ones)

    # what the sequence exercised
    with open_warehouse(settings.warehouse_url) as client:
        merged, late, repriced, meetings = client.query("""
            SELECT (SELECT max(fragments) FROM int_sessions_merged), (SELECT sum(late_calls) FROM fct_sessions),
                (SELECT groupUniqArray(pricing_status) FROM fct_calls WHERE pricing_status = 'repriced'),
                (SELECT countIf(outcome_type = 'meeting_booked' AND is_idle) FROM fct_sessions)""").result_rows[0]
        moved, failed = client.query("""
            SELECT (SELECT session_id FROM fct_sessions WHERE session_uid =
                        (SELECT session_uid FROM fct_outcomes WHERE outcome_id = 'o-move')),
                (SELECT successful_outcomes FROM fct_sessions WHERE session_id = 'acme-u0-support-bot-d1s0')
            """).result_rows[0]
    assert merged >= 3 and late == 3 and repriced == ["repriced"] and meetings > 0
    assert moved == "acme-u0-support-bot-d2s2" and failed == 0


def test_an_incremental_model_whose_columns_changed_is_not_patched(tmp_path):
    """A table whose columns no longer match its model (a column the model does not give; a column
    that became Nullable) fails the incremental build with the fix to run (macros/delete_insert.sql),
    and --full-refresh rebuilds it; an intermediate model, then a mart with a contract (the
    materialization leaves its check to the same macro). `yieldmeter run`'s scheduled build (the
    last case, as after an upgrade of yieldmeter) runs that rebuild itself and succeeds."""
    settings, w = first_build(tmp_path, days=1)
    for day, table, change, named in [(1, "int_calls_sessionized", "ADD COLUMN stale UInt8", "stale UInt8"),
                                      (2, "fct_sessions", "ADD COLUMN stale UInt8", "stale UInt8"),
                                      (3, "int_outcome_attribution", "MODIFY COLUMN attribution_method Nullable(String)",
                                       "attribution_method Nullable(String)")]:
        with open_warehouse(settings.warehouse_url) as client:
            client.command(f"ALTER TABLE {table} {change}")
            w.client = client
            w.day(day)
        if day < 3:
            run = run_dbt(settings, ["run", *SELECT, *VARS])
            assert not run.success
            assert any(f"{table} changed" in f and named in f and "--full-refresh" in f
                       for f in run.failures()), run.failures()
            build(settings, "--full-refresh", tests=False)
        else:  # `yieldmeter run`'s scheduled build, and what its status line shows
            status = transform_hook(settings, 0)(None, SimpleNamespace(job="running"))
            assert re.fullmatch(rf"dbt build ok in \d+s \(rebuilt from scratch: the columns of {table} changed\)",
                                status), status
        with open_warehouse(settings.warehouse_url) as client:
            columns = [tuple(r[:2]) for r in client.query(f"DESCRIBE TABLE {table}").result_rows]
            days = client.query("SELECT uniqExact(day) FROM fct_calls").result_rows[0][0]
        assert tuple(named.split(" ", 1)) not in columns and days == day + 1


def test_a_warehouse_another_version_of_the_project_built_is_rebuilt_from_scratch(tmp_path, monkeypatch):
    """A change of how a model computes its rows that keeps its columns (here a var's default in
    dbt_project.yml: the attribution window, 24 hours to 0) is not caught by the build; built
    incrementally, the rows of the earlier project would stay beside the new ones. The ledger
    records the version of the project that built it (transform.project_version), and
    `yieldmeter run`'s scheduled build and `yieldmeter transform` rebuild every model from scratch
    when it changed, and only then."""
    settings, w = first_build(tmp_path, days=2)

    def by_user_time() -> int:  # the sales assistant's outcomes: 5 minutes after their session
        with open_warehouse(settings.warehouse_url) as client:
            return client.query("SELECT count() FROM fct_outcome_attributions WHERE attribution_method = 'user_time'"
                                ).result_rows[0][0]

    within_a_day = by_user_time()
    assert within_a_day > 0
    original, project = transform.DBT_DIR, tmp_path / "dbt"
    shutil.copytree(original, project, ignore=shutil.ignore_patterns("target", "logs"))
    config = project / "dbt_project.yml"
    config.write_text(config.read_text().replace("attribution_window_hours: 24", "attribution_window_hours: 0"))
    monkeypatch.setattr(transform, "DBT_DIR", project)
    assert transform.project_version() != transform.project_version(original)
    with open_warehouse(settings.warehouse_url) as client:
        w.client = client
        w.day(2)

    hook, running = transform_hook(settings, 0), SimpleNamespace(job="running")
    status = hook(None, running)
    assert re.fullmatch(r"dbt build ok in \d+s \(rebuilt from scratch: the dbt project changed since the last build\)",
                        status), status
    assert by_user_time() == 0  # an incremental build would have left the first two days' as they were
    status = hook(None, running)
    assert re.fullmatch(r"dbt build ok in \d+s", status), status

    monkeypatch.setattr(transform, "DBT_DIR", original)  # back to this version: `yieldmeter transform`
    arguments = ["transform", *SELECT, *VARS]
    done = CliRunner().invoke(app, arguments, env={"YIELDMETER_STATE_DIR": str(settings.state_path)})
    assert done.exit_code == 0, done.output
    assert "every model rebuilt from scratch (--full-refresh): the dbt project changed since the last build" in done.output
    assert by_user_time() == within_a_day * 3 // 2


def test_a_scheduled_build_tests_the_rows_it_rebuilt(tmp_path):
    """A build that leaves out the full-history tests (yieldmeter run's) tests the rows it rebuilt
    (macros/tests.sql, clickhouse__get_where_subquery): a duplicate of a call on a day it rebuilt
    fails the unique test, one on a day it did not passes it; every test (`yieldmeter transform`)
    reads every row and fails on both."""
    settings, w = first_build(tmp_path, days=2)
    with open_warehouse(settings.warehouse_url) as client:  # a new session on day 3 only: day 3 is rebuilt
        w.client = client
        w.fragment(w.calls("acme", "acme-u0", "support-bot", DAY0 + timedelta(days=3, hours=9), 4, model=0,
                           session_id="acme-u0-support-bot-d3s0"))
    build(settings)
    with open_warehouse(settings.warehouse_url) as client:
        days = sorted(str(r[0]) for r in client.query("SELECT key FROM int_rebuild_scope WHERE kind = 'day'").result_rows)
    assert days == [str((DAY0 + timedelta(days=3)).date())]
    unique = ["test", "--select", "fct_calls,test_name:unique", *VARS]

    def duplicate(day: int) -> None:
        with open_warehouse(settings.warehouse_url) as client:
            client.command(f"INSERT INTO fct_calls SELECT * FROM fct_calls "
                           f"WHERE day = toDate('{(DAY0 + timedelta(days=day)).date()}') LIMIT 1")

    def unique_fails(*args: str) -> bool:
        run = run_dbt(settings, [*unique, *args])
        assert run.results, "no test ran"
        return not run.success

    duplicate(0)
    assert not unique_fails("--exclude", "tag:full_history") and unique_fails()
    duplicate(3)
    assert unique_fails("--exclude", "tag:full_history")


def test_yieldmeter_runs_builds_leave_the_views_out_after_one_succeeded(tmp_path):
    """yieldmeter run's builds (transform.ScheduledBuilds): the first builds the views, the next
    leave them out but still run their tests; a build that fails (here: a view dropped behind the
    process's back) makes the next one build them again."""
    settings, _ = first_build(tmp_path, days=1)
    builds = ScheduledBuilds(settings, VARS)

    def views_and_tests(run) -> tuple[list[str], list[str]]:
        assert run.results, "nothing ran"
        views = sorted(r.node.name for r in run.results if r.node.resource_type == "model" and r.node.config.materialized == "view")
        return views, sorted(r.node.name for r in run.results if r.node.resource_type == "test")

    first = builds()
    assert first.success, first.failures()
    views, tests = views_and_tests(first)
    assert "stg_outcomes" in views and "int_calls_priced" in views
    second = builds()
    assert second.success, second.failures()
    assert views_and_tests(second) == ([], tests)

    with open_warehouse(settings.warehouse_url) as client:
        client.command("DROP VIEW stg_outcomes")
    assert not builds().success
    again = builds()
    assert again.success, again.failures()
    assert views_and_tests(again) == (views, tests)


def test_a_project_dbt_cannot_parse_fails_yieldmeter_runs_builds_not_the_run(tmp_path, monkeypatch):
    """dbt raising (a project it cannot parse; a server it cannot reach) fails a build of
    `yieldmeter run`, whose status line says why, not the run: its pipeline goes on storing what
    arrives (the hook returns, the runner's loop goes on), and the next build, once dbt can run
    again, succeeds in the same process. A bounded run whose last build failed exits 1 (the
    pipeline's part, Kafka and Flink, is left out here: run_pipeline calls the real hook once, as
    the runner does when a bounded job has finished)."""
    project = tmp_path / "dbt"
    shutil.copytree(transform.DBT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    broken = project / "models" / "marts" / "broken.sql"
    broken.write_text("select {{ ref( }}\n")
    monkeypatch.setattr(transform, "DBT_DIR", project)  # where run_dbt finds the project
    settings = make_settings(tmp_path / "state")
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
    hook = transform_hook(settings, 0)
    state = RunState(job="running")

    why = r"Compilation Error in model broken \(models/marts/broken.sql\) unexpected '}', expected '\)'"
    assert re.match(rf"dbt parse FAILED: {why}.* \(`yieldmeter transform parse` shows all\)$", hook(None, state))
    assert re.match(why, state.dbt_failure)
    assert re.match(rf"dbt build FAILED: {why}.* \(`yieldmeter transform` shows all\)$", hook(None, state))

    def bounded_run(config, until_caught_up, cycle_s, hooks, on_update) -> RunState:
        finished = RunState(job="finished")
        for each in hooks:
            finished.last_hook = each(None, finished) or finished.last_hook
        return finished

    monkeypatch.setattr(cli_run, "run_pipeline", bounded_run)
    environment = {"YIELDMETER_STATE_DIR": str(settings.state_path)}
    arguments = ["run", "--until-caught-up", "--no-alerts"]
    failed = CliRunner().invoke(app, arguments, env=environment)
    assert failed.exit_code == 1 and "Its last dbt build failed: Compilation Error in model broken" in failed.output

    broken.unlink()
    assert re.fullmatch(r"dbt build ok in \d+s", hook(None, state)) and state.dbt_failure == ""
    assert CliRunner().invoke(app, arguments, env=environment).exit_code == 0


def test_a_server_yieldmeter_run_cannot_reach_fails_its_build_not_the_run(tmp_path):
    """A warehouse server that does not answer when a build is due (here: nothing listens on its
    port) fails that build of `yieldmeter run`, saying why, and the hook returns: the run goes on."""
    settings = make_settings(tmp_path / "state", clickhouse_url=f"http://127.0.0.1:{free_port()}")
    state = RunState(job="running")
    status = transform_hook(settings, 0)(None, state)
    assert re.match(r"dbt build FAILED: Cannot reach ClickHouse at http://127\.0\.0\.1:\d+", status), status
    assert state.dbt_failure.startswith("Cannot reach ClickHouse")
