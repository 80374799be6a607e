"""`yieldmeter transform` (dbt build) on the simulator's seeded fortnight, checked against the
ground truth the simulator planted: every model builds and passes its tests, the marts agree
with the manifest, the planted tokenmaxxers are flagged and the honest heavy users are not
(precision and recall printed), the planted model overkill is found, a price corrected after
the fact reprices its calls in every mart and shows up in the repricing audit."""

from __future__ import annotations

import json
from decimal import Decimal
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from tests.conftest import DEV_LIB
from yieldmeter.cli import app
from tests.conftest import PROJECT_ROOT
from yieldmeter.transform import dbt_dir
from yieldmeter.warehouse import open_warehouse

pytestmark = pytest.mark.e2e

MARTS = {"fct_calls", "fct_sessions", "fct_outcomes", "fct_outcome_attributions", "value_metrics_daily",
         "model_overkill", "tokenmaxxing_signals", "budget_status", "outcome_budget_status", "repricing_audit",
         "focus_ai_spend"}
LINK_METHOD = {"session_id": "session_id", "trace_id": "trace_id", "user_time": "user_time"}


def rows(warehouse, sql: str, **parameters) -> list[tuple]:
    with open_warehouse(warehouse.settings.warehouse_url) as client:
        return client.query(sql, parameters=parameters).result_rows


def test_transform_builds_and_tests_every_model(value_warehouse, figures):
    build = value_warehouse.build
    assert build.success, "\n".join(build.failures())
    by_type: dict[str, set[str]] = {}
    for result in build.results:
        by_type.setdefault(str(result.node.resource_type), set()).add(result.node.name)
    sql_files = {p.stem for p in (PROJECT_ROOT / "dbt" / "models").rglob("*.sql")}
    assert by_type["model"] == sql_files  # every model was built ...
    assert MARTS <= by_type["model"]
    assert len(by_type["unit_test"]) >= 6  # ... the logic unit-tested ...
    # ... and every key, invariant and reconciliation tested: every data test of the project ran
    project = json.loads((dbt_dir(value_warehouse.settings) / "target" / "manifest.json").read_text())
    data_tests = {n["name"] for n in project["nodes"].values() if n["resource_type"] == "test"}
    assert by_type["test"] == data_tests and len(data_tests) >= 75
    assert set(build.counts()) <= {"success", "pass", "no-op"}  # no-op: the exposures
    figures.insert(0, f"dbt build on {value_warehouse.manifest['totals']['valid_usage_events']:,} simulated calls: "
                      f"{len(by_type['model'])} models, {len(by_type['test'])} data tests, "
                      f"{len(by_type['unit_test'])} unit tests, all passed, in {build.seconds:.0f}s")


def test_marts_agree_with_the_simulators_ground_truth(value_warehouse):
    manifest, totals = value_warehouse.manifest, value_warehouse.manifest["totals"]
    calls, tokens, late = rows(value_warehouse,
                               "SELECT count(), sum(total_tokens), countIf(is_session_correction) FROM fct_calls")[0]
    assert calls == totals["valid_usage_events"]  # duplicates collapsed, malformed lines in dead letters
    assert tokens == totals["tokens"]
    per_org = {org: (t, o, s) for org, t, o, s in rows(
        value_warehouse,
        "SELECT org_id, sum(total_tokens), sum(outcomes), sum(successful_outcomes) FROM value_metrics_daily GROUP BY org_id")}
    assert per_org == {org: (c["tokens"], c["outcomes"], c["successes"]) for org, c in manifest["per_org"].items()}
    # every session closed (bounded run): every call sits in one, late calls merged by dbt
    in_sessions, merged_late = rows(value_warehouse, "SELECT sum(calls), sum(late_calls) FROM fct_sessions")[0]
    assert in_sessions == calls and merged_late == late


def test_each_outcome_is_attributed_once_by_the_link_its_app_uses(value_warehouse):
    manifest = value_warehouse.manifest
    found = rows(value_warehouse, "SELECT app, attribution_method, count(), uniqExact(outcome_id) FROM fct_outcomes "
                                  "GROUP BY app, attribution_method")
    assert {app: (method, n) for app, method, n, _ in found} == {
        app: (LINK_METHOD[info["outcome_link"]], info["outcomes"]) for app, info in manifest["per_app"].items()}
    assert all(n == unique for *_, n, unique in found)
    # the sessions' outcome counts add up to the outcomes: none counted for two sessions
    assert rows(value_warehouse, "SELECT sum(outcomes) FROM fct_sessions")[0][0] == manifest["totals"]["outcomes"]


def test_planted_tokenmaxxers_are_flagged_and_honest_heavy_users_are_not(value_warehouse, figures):
    planted = value_warehouse.manifest["planted"]
    maxxers = {(u["user_id"], u["app"]) for u in planted["tokenmaxxers"]}
    honest = {(u["user_id"], u["app"]) for u in planted["honest_heavy_users"]}
    flagged = {(user, app): reasons for user, app, reasons in rows(
        value_warehouse,
        "SELECT entity_id, app, groupUniqArrayArray(reasons) FROM tokenmaxxing_signals "
        "WHERE entity_type = 'user' AND is_flagged GROUP BY entity_id, app")}
    hits = maxxers & set(flagged)
    precision, recall = len(hits) / len(flagged), len(hits) / len(maxxers)
    figures.append(f"tokenmaxxing (users flagged in any week): precision {precision:.2f} ({len(hits)} of "
                   f"{len(flagged)} flagged are planted), recall {recall:.2f} ({len(hits)} of {len(maxxers)} planted "
                   f"found); honest heavy users flagged: {len(honest & set(flagged))} of {len(honest)}")
    for user, app, week, tokens, peer_tokens, volume_z, yield_z, reasons in rows(
            value_warehouse,
            "SELECT entity_id, app, week, total_tokens, peer_median_tokens, volume_z, yield_z, reasons "
            "FROM tokenmaxxing_signals WHERE entity_type = 'user' AND (entity_id, app) IN {who:Array(Tuple(String, String))} "
            "ORDER BY entity_id, week", who=sorted(maxxers | honest)):
        kind = "tokenmaxxer" if (user, app) in maxxers else "honest heavy"
        figures.append(f"  {kind:12} {user} on {app}, week {week}: {tokens:,} tokens vs peer median {peer_tokens:,.0f} "
                       f"(z {volume_z:+.1f}), yield z {yield_z:+.1f}, reasons {list(reasons)}")
    assert recall == 1.0
    assert not honest & set(flagged)
    assert precision >= 0.5
    assert all("low_yield" in flagged[m] for m in maxxers)


def test_planted_model_overkill_is_flagged_with_its_saving(value_warehouse, figures):
    for planted in value_warehouse.manifest["planted"]["model_overkill"]:
        expensive = planted["expensive_model"]["catalogue_id"]
        ((is_overkill, cheaper, saving, teams, rate, cheaper_rate),) = rows(
            value_warehouse,
            "SELECT is_overkill, cheaper_model, estimated_saving_usd, teams, success_rate, cheaper_success_rate "
            "FROM model_overkill WHERE org_id = {org:String} AND app = {app:String} AND model = {model:String}",
            org=planted["org_id"], app=planted["app"], model=expensive)
        figures.append(f"model overkill: {planted['org_id']}/{planted['app']} on {expensive} (success {rate:.2f}) -> "
                       f"{cheaper} (success {cheaper_rate:.2f}), estimated saving ${saving:.2f}")
        assert is_overkill and saving > 0
        assert cheaper in {m["catalogue_id"] for m in planted["cheaper_models"]}
        if planted["team"]:
            assert teams == [planted["team"]]


def test_a_corrected_price_reprices_its_calls_and_shows_in_the_repricing_audit(value_warehouse):
    before, after = value_warehouse.correction.before, value_warehouse.correction.after
    counts = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")
    # the calls the corrected price covers, as the stream wrote them (priced with the old rate, or
    # unpriced if the stream had no price for them) and as the marts count them now
    calls = {row[0]: (SimpleNamespace(**dict(zip(counts, row[1:6]))), *row[6:]) for row in rows(
        value_warehouse,
        f"SELECT c.event_id, {', '.join('c.' + c for c in counts)}, s.pricing_status, s.price_id, s.list_cost_usd, "
        "c.pricing_status, c.list_cost_usd, c.cost_usd, c.discount_pct "
        "FROM fct_calls AS c INNER JOIN stg_calls AS s ON c.event_id = s.event_id WHERE c.price_id = {p:String}",
        p=before.price_id)}
    changed = set()
    for event_id, (usage, streamed, streamed_price, streamed_list, status, list_cost, cost, pct) in calls.items():
        if streamed == "priced":
            assert (streamed_price, streamed_list) == (before.price_id, before.cost_usd(usage))  # the old rate
        # every mart now counts the corrected rate (PriceRecord.cost_usd, the reference, to the last digit)
        assert list_cost == after.cost_usd(usage) and cost == list_cost * (100 - pct) / 100
        if streamed != "priced" or streamed_list != list_cost:
            changed.add(event_id)
        assert status == ("repriced" if event_id in changed else "priced")
    assert len(changed) > len(calls) / 2  # (a call with no uncached input costs the same)
    (published,), = rows(value_warehouse, "SELECT published_at FROM stg_prices WHERE price_id = {p:String}",
                         p=before.price_id)
    audit = {event_id: rest for event_id, *rest in rows(
        value_warehouse, "SELECT event_id, reasons, current_price_id, changed_at, recorded_list_cost_usd, "
                         "current_list_cost_usd FROM repricing_audit WHERE current_price_id = {p:String}",
        p=before.price_id)}
    assert set(audit) == changed  # exactly the calls the new rate changes
    for event_id, (reasons, current_price, changed_at, recorded, current) in audit.items():
        usage, streamed, *_ = calls[event_id]
        reason = "price_corrected" if streamed == "priced" else "newly_priced"
        assert (reasons, current_price, changed_at) == ([reason], before.price_id, published)
        assert current == after.cost_usd(usage) and recorded == (before.cost_usd(usage) if streamed == "priced" else 0)


def test_the_org_discount_reaches_effective_cost(value_warehouse):
    (list_cost, cost), = rows(value_warehouse, "SELECT sum(list_cost_usd), sum(cost_usd) FROM fct_calls "
                                               "WHERE org_id = 'acme' AND provider = 'anthropic'")
    assert list_cost > 0 and cost == list_cost * Decimal("0.875")
    focus = dict(((org, provider == "anthropic"), (effective, listed)) for org, provider, effective, listed in rows(
        value_warehouse, "SELECT SubAccountId, ProviderName, sum(EffectiveCost), sum(ListCost) FROM focus_ai_spend "
                         "GROUP BY SubAccountId, ProviderName"))
    assert focus[("acme", True)] == (cost, list_cost)
    assert all(effective == listed for (org, anthropic), (effective, listed) in focus.items() if org != "acme")


def test_transform_cli_passes_dbt_arguments_through(value_warehouse):
    """`yieldmeter transform --select ... --vars ...`: as_of moves the budget's month-to-date."""
    settings = value_warehouse.settings
    env = {"YIELDMETER_STATE_DIR": str(settings.state_path), "YIELDMETER_LIB_DIR": str(DEV_LIB)}
    runner = CliRunner()
    as_of = "2026-11-08T00:00:00Z"
    try:
        result = runner.invoke(app, ["transform", "--select", "budget_status", "--vars", f"{{as_of: '{as_of}'}}"], env=env)
        assert result.exit_code == 0, result.output
        assert "dbt build --select budget_status" in result.output
        (mtd, share, status), = rows(value_warehouse, "SELECT month_to_date_usd, month_elapsed_share, status "
                                                      "FROM budget_status WHERE org_id = 'acme' AND team = '*'")
        (spent,), = rows(value_warehouse, "SELECT sum(cost_usd) FROM fct_calls WHERE org_id = 'acme' "
                                          "AND occurred_at <= parseDateTime64BestEffort({t:String}, 3, 'UTC')", t=as_of)
        assert mtd == spent and share == pytest.approx(7 / 30)
    finally:
        restored = runner.invoke(app, ["transform", "--select", "budget_status"], env=env)
        assert restored.exit_code == 0, restored.output
