"""The alert rules replayed over the simulator's seeded fortnight (the real chain and `dbt build`,
shared with the dbt tests through the `value_warehouse` fixture), as the main job would have run
them: the hourly rules just after the planted spend spike's hour settled, the rules over the marts
at the end of the span. The planted spike and every planted tokenmaxxer must fire, the honest heavy
users must not; the findings the manifest did not plant are counted per rule and printed in the
run's summary (and recorded as a test property)."""

from __future__ import annotations

from collections import Counter

import pytest

from yieldmeter.alerts.model import Finding
from yieldmeter.alerts.replay import demo_alerts, replay_findings, simulation_config
from yieldmeter.warehouse import open_warehouse

pytestmark = pytest.mark.e2e


def planted_match(finding: Finding, planted: dict) -> bool:
    """Does the finding point at something the simulator planted (or the team/app holding it)?"""
    e = finding.entity
    if finding.rule == "spend_spike":
        spike = planted["spend_spike"]
        return (e.get("org"), e.get("team"), e.get("app", spike["app"])) == (spike["org_id"], spike["team"], spike["app"])
    if finding.rule == "tokenmaxxing":
        for user in planted["tokenmaxxers"]:
            if (e.get("org"), e["app"]) != (user["org_id"], user["app"]):
                continue
            if "user" in e:
                if e["user"] == user["user_id"]:
                    return True
            elif e.get("team", user["team"]) == user["team"]:  # the planted user's team, or org's app
                return True
        return False
    if finding.rule == "unpriced_model":
        return e.get("model") == planted["unpriced_model"]["model"]
    return False


@pytest.fixture(scope="module")
def replayed(value_warehouse):
    config = simulation_config()  # built-in thresholds, the $/hour floor scaled to the simulation
    with open_warehouse(value_warehouse.settings.warehouse_url) as client:
        return replay_findings(client, config, value_warehouse.manifest)


def test_planted_spike_and_tokenmaxxers_fire_and_the_rest_is_counted(value_warehouse, replayed, figures,
                                                                     record_property):
    planted = value_warehouse.manifest["planted"]
    findings = [f for _, found in replayed for f in found]
    for point, found in replayed:
        figures.append(f"alerts replayed at {point.at:%Y-%m-%d %H:%M} UTC ({point.label}): {len(found)} fired")
        for f in found:
            mark = "planted" if planted_match(f, planted) else "NOT PLANTED"
            figures.append(f"  {mark:11} {f.severity.value:8} {f.key} value {f.value:.4f} {f.unit}")

    spike = planted["spend_spike"]
    spikes = [f for f in findings if f.rule == "spend_spike" and planted_match(f, planted)]
    assert {f.entity.get("app") for f in spikes} >= {spike["app"]}, "the planted spend spike did not fire"

    users = {(f.entity["user"], f.entity["app"]) for f in findings if f.rule == "tokenmaxxing" and "user" in f.entity}
    maxxers = {(u["user_id"], u["app"]) for u in planted["tokenmaxxers"]}
    honest = {(u["user_id"], u["app"]) for u in planted["honest_heavy_users"]}
    assert maxxers <= users, f"planted tokenmaxxers without an incident: {sorted(maxxers - users)}"
    assert not honest & users, f"honest heavy users alerted: {sorted(honest & users)}"
    tokenmaxxing = next(f for f in findings if f.rule == "tokenmaxxing" and "user" in f.entity)
    assert {"Yield (successes per M tokens)", "Volume z / yield z"} <= set(tokenmaxxing.details)  # the evidence

    unplanted = [f for f in findings if not planted_match(f, planted)]
    by_rule = Counter(f.rule for f in unplanted)
    # a spend spike where a planted tokenmaxxer works is not planted as a spike, but has a planted cause
    maxxer_slots = {(u["org_id"], u["team"]) for u in planted["tokenmaxxers"]}
    near = sum(f.rule == "spend_spike" and (f.org, f.team) in maxxer_slots for f in unplanted)
    line = (f"alerts fired that the manifest did not plant: {len(unplanted)} of {len(findings)}"
            + (f" ({', '.join(f'{rule} {n}' for rule, n in sorted(by_rule.items()))})" if by_rule else "")
            + f"; of these, {near} spend spike(s) in a planted tokenmaxxer's team")
    print(line)
    figures.append(line)
    record_property("alerts_unplanted", dict(by_rule))
    record_property("alerts_fired", len(findings))


def test_demo_alerts_prints_each_replay_point(value_warehouse):
    with open_warehouse(value_warehouse.settings.warehouse_url) as client:
        lines = demo_alerts(client, value_warehouse.settings, value_warehouse.manifest)
    assert sum(line.startswith("Alerts as of ") for line in lines) == 2
    assert any("tokenmaxxing/" in line for line in lines)
