"""One definition per metric: every surface that shows cost per successful outcome (the report,
the cost-per-outcome alert, the demo's answer, the outcome budgets, model overkill, the analysts'
query in docs/queries.md) shows the number the definition gives over the marts' rows, on the
same data; with an unpriced call in the group it is unknown (None) everywhere, never low.

The expected numbers are computed here in Python, with Decimal, from the calls and outcomes of
fct_calls / fct_outcomes / fct_sessions: spend / successful outcomes, truncated to the metric's
12 decimals. The warehouse is the fortnight of tests/integration/fortnight.py (with a self-hosted
model no price covers), the marts built by a real dbt run.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal, localcontext

import pytest

from tests.conftest import make_settings
from tests.integration.alerts_support import run_rule
from tests.integration.fortnight import NOW, START, TOKENMAXXER, fill_warehouse, store_budgets
from yieldmeter.budgets import load_budget_file
from yieldmeter.cli.demo import EXAMPLE_BUDGETS
from yieldmeter import report_queries as q
from yieldmeter.alerts.config import build_config
from yieldmeter.alerts.mart_rules import COST_PER_OUTCOME_SQL
from yieldmeter.cli.demo import _answers
from tests.conftest import PROJECT_ROOT
from yieldmeter.transform import run_dbt
from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration

# the cost-per-outcome rule firing on any rise, so its findings show the numbers it compares
EAGER = build_config({"rules": {"cost_per_outcome_regression": {
    "ratio": 1, "critical_ratio": 1, "min_successes": 1, "min_cost_usd": 0}}}, "test")


def per_success(cost: Decimal, successes: int, unpriced: int) -> Decimal | None:
    """The definition, independently: spend / successes (12 decimals, truncated); unknown while unpriced."""
    if not successes or unpriced:
        return None
    with localcontext() as exact:
        exact.prec = 80
        return (cost / successes).quantize(Decimal("1e-12"), rounding=ROUND_DOWN)


class Sums:
    def __init__(self):
        self.cost, self.unpriced, self.successes = Decimal(0), 0, 0

    @property
    def metric(self) -> Decimal | None:
        return per_success(self.cost, self.successes, self.unpriced)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    state = tmp_path_factory.mktemp("metric-surfaces")
    settings = make_settings(state)
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
        fill_warehouse(client)
        store_budgets(client, load_budget_file(EXAMPLE_BUDGETS))
    run = run_dbt(settings, ["run", "--select", "+value_metrics_daily +outcome_budget_status +model_overkill +tokenmaxxing_signals"])
    assert run.success, run.failures()
    with open_warehouse(settings.warehouse_url) as client:
        calls = client.query("SELECT org_id, team, user_id, app, outcome_type, day, cost_usd, is_priced "
                             "FROM fct_calls").result_rows
        outcomes = client.query("SELECT org_id, team, user_id, app, outcome_type, day, is_success "
                                "FROM fct_outcomes").result_rows
    assert any(not priced for *_, priced in calls)  # the self-hosted model: some groups are unknown
    return settings, calls, outcomes


def expected(calls, outcomes, key, keep=lambda day: True) -> dict[tuple, Sums]:
    """Sums per key(org, team, user, app, outcome_type) over the days ``keep`` accepts."""
    sums: dict[tuple, Sums] = defaultdict(Sums)
    for org, team, user, app, kind, day, cost, priced in calls:
        if keep(day):
            s = sums[key(org, team, user, app, kind)]
            s.cost += cost
            s.unpriced += not priced
    for org, team, user, app, kind, day, success in outcomes:
        if keep(day):
            sums[key(org, team, user, app, kind)].successes += success
    return sums


def test_the_report_shows_the_marts_cost_per_outcome(warehouse):
    settings, calls, outcomes = warehouse
    want = expected(calls, outcomes, lambda org, team, user, app, kind: (org, team, app))
    total = expected(calls, outcomes, lambda *_: ())[()]
    with open_warehouse(settings.warehouse_url) as client:
        start, end = q.period(client, NOW, 14)
        w = q.Warehouse(client, start, end)
        rows = q.cost_per_outcome_by_team(w)
        totals = q.totals(w)
    assert (start, end) == (START, NOW)
    assert {(r.org, r.team, r.app): (r.cost_usd, r.cost_per_successful_outcome_usd) for r in rows} == {
        k: (s.cost, s.metric) for k, s in want.items() if s.cost > 0 or s.unpriced}
    assert any(r.cost_per_successful_outcome_usd is None and r.successful_outcomes for r in rows)  # unknown
    assert any(r.cost_per_successful_outcome_usd is not None for r in rows)
    assert (totals.cost_usd, totals.cost_per_successful_outcome_usd) == (total.cost, total.metric)


def test_the_cost_per_outcome_alert_compares_the_marts_numbers(warehouse):
    settings, calls, outcomes = warehouse
    start = (NOW - timedelta(days=7)).date()
    key = lambda org, team, user, app, kind: (org, team, app, kind)  # noqa: E731
    now = expected(calls, outcomes, key, lambda day: start <= day < start + timedelta(days=7))
    before = expected(calls, outcomes, key, lambda day: start - timedelta(days=7) <= day < start)
    with open_warehouse(settings.warehouse_url) as client:
        rows = client.query(COST_PER_OUTCOME_SQL, parameters={"start": start},
                            settings={"prefer_column_name_to_alias": 1}).result_rows
        # the rule at this evaluation time, with a threshold any rise passes: its numbers are those rows
        findings = run_rule(client, "cost_per_outcome_regression", EAGER, now=NOW + timedelta(hours=2))
    found = {(org, team, app, kind): (value, baseline) for org, team, app, kind, *_, value, baseline in rows}
    assert found == {k: (now[k].metric, before[k].metric) for k in set(now) & set(before)
                     if k[3] and now[k].metric is not None and before[k].metric is not None}
    unknown = [k for k in set(now) & set(before) if k[3] and now[k].successes and now[k].unpriced]
    assert found and unknown and not set(unknown) & set(found)  # unpriced weeks are never compared
    assert findings  # some rose, or fell: both weeks' numbers are the marts'
    for finding in findings.values():
        entity = finding.entity
        assert (finding.value, finding.baseline) == found[entity["org"], entity["team"], entity["app"], entity["outcome"]]


def test_the_demo_answers_with_the_marts_dearest_outcome(warehouse):
    settings, calls, outcomes = warehouse
    want = expected(calls, outcomes, lambda org, team, user, app, kind: (org, app, kind))
    known = {k: s.metric for k, s in want.items() if k[2] and s.metric is not None}
    (org, app, kind), dearest = max(known.items(), key=lambda item: item[1])
    with open_warehouse(settings.warehouse_url) as client:
        answer = _answers(client)[0]
    assert f"in {org}'s {app} costs ${dearest:,.2f} of tokens" in answer and kind.replace("_", " ") in answer


def test_outcome_budgets_and_model_overkill_use_the_same_definition(warehouse):
    settings, calls, outcomes = warehouse
    with open_warehouse(settings.warehouse_url) as client:
        budgets = client.query("SELECT org_id, team, app, outcome_type, cost_usd, successful_outcomes, "
                               "unpriced_calls, cost_per_successful_outcome_usd FROM outcome_budget_status").result_rows
        models = client.query("SELECT org_id, app, outcome_type, model, cost_usd, successful_outcomes, unpriced_calls, "
                              "cost_per_successful_outcome_usd FROM model_overkill").result_rows
        sessions = client.query("SELECT org_id, app, outcome_type, primary_model, cost_usd, successful_outcomes, "
                                "unpriced_calls FROM fct_sessions WHERE primary_model != ''").result_rows
    assert budgets and models
    for org, team, app, kind, cost, successes, unpriced, metric in budgets:
        scope = expected(calls, outcomes, lambda o, t, u, a, k: (o, a, k) == (org, app, kind) and team in ("*", t))
        assert (cost, successes) == (scope[True].cost, scope[True].successes)
        assert metric == per_success(cost, successes, unpriced)
    by_model: dict[tuple, Sums] = defaultdict(Sums)
    for org, app, kind, model, cost, successes, unpriced in sessions:
        s = by_model[org, app, kind, model]
        s.cost, s.successes, s.unpriced = s.cost + cost, s.successes + successes, s.unpriced + unpriced
    assert {(o, a, k, m): metric for o, a, k, m, *_, metric in models} == {k: s.metric for k, s in by_model.items()}
    assert any(metric is None and successes for *_, successes, unpriced, metric in budgets if unpriced)


def test_the_documented_query_shows_the_marts_cost_per_outcome(warehouse):
    settings, calls, outcomes = warehouse
    doc = (PROJECT_ROOT / "docs" / "queries.md").read_text()
    query = re.search(r"### Cost per successful outcome by app.*?```sql\n(.*?)```", doc, re.S)[1]
    want = expected(calls, outcomes, lambda org, team, user, app, kind: (org, app, kind))
    with open_warehouse(settings.warehouse_url) as client:
        rows = client.query(query, settings={"readonly": 2}).result_rows  # as `yieldmeter sql` runs it
    assert {(org, app, kind): metric for org, app, kind, *_, metric in rows} == {
        k: s.metric for k, s in want.items() if k[2]}


def test_the_demos_tokenmaxxing_answer_names_the_latest_week_with_a_flag(warehouse):
    """Just after Monday 00:00 UTC the newest week holds an hour of data: shown in the mart, not
    judged (tokenmaxxing_min_days), so it has no flag. The demo's answer still names the planted
    tokenmaxxer, with the week it was flagged in."""
    settings, *_ = warehouse
    *_, user, app = TOKENMAXXER
    flagged_week = (START + timedelta(days=7)).date()
    with open_warehouse(settings.warehouse_url) as client:
        answer = next(a for a in _answers(client) if a.startswith("Tokenmaxxing:"))
        assert f"{user} on {app}" in answer and f"week of {flagged_week:%b %d}" in answer
        client.command("INSERT INTO tokenmaxxing_signals SELECT * REPLACE (week + 7 AS week, false AS is_flagged, "
                       "toUInt8(1) AS days_of_data) FROM tokenmaxxing_signals WHERE week = (SELECT max(week) "
                       "FROM tokenmaxxing_signals)")
        try:
            assert next((a for a in _answers(client) if a.startswith("Tokenmaxxing:")), None) == answer
        finally:
            client.command(f"DELETE FROM tokenmaxxing_signals WHERE week > '{flagged_week}'")
