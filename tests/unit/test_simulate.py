"""The workload simulator: wire format, manifest = output, planted behaviours, determinism.

Every planted behaviour is checked against the OUTPUT (recomputed from the JSONL files), not
against the generator's own counters, so the manifest cannot drift from what it describes.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from genai_prices import Usage, calc_price
from typer.testing import CliRunner

from yieldmeter.contracts import ContractError, parse_outcome, parse_usage, to_json_bytes
from yieldmeter.normalize import normalize_model
from yieldmeter.simulate import (
    APPS,
    INACTIVITY_GAP_S,
    MODELS,
    UNPRICED_MODEL,
    FileSink,
    SimulationOptions,
    simulate,
)

pytestmark = pytest.mark.unit

OPTIONS = SimulationOptions(events=40_000, days=14, seed=7)
NOW = OPTIONS.end + timedelta(days=1)  # the validator's clock: the span is in its past


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def generate(tmp_path, options: SimulationOptions) -> SimpleNamespace:
    manifest = simulate(options, FileSink(tmp_path))
    usage_lines = (tmp_path / "usage.jsonl").read_bytes().splitlines()
    outcome_lines = (tmp_path / "outcomes.jsonl").read_bytes().splitlines()
    malformed = {m["position"] for m in manifest["planted"]["malformed"]["lines"]}
    events = [json.loads(line) for n, line in enumerate(usage_lines, 1) if n not in malformed]
    unique = list({e["event_id"]: e for e in events}.values())  # duplicates are identical lines
    return SimpleNamespace(dir=tmp_path, manifest=manifest, usage_lines=usage_lines, outcome_lines=outcome_lines,
                           malformed=malformed, events=events, unique=unique,
                           outcomes=[json.loads(line) for line in outcome_lines])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> SimpleNamespace:
    return generate(tmp_path_factory.mktemp("simulate"), OPTIONS)


def price(event: dict) -> Decimal:
    provider = event["provider"]
    model = normalize_model(provider, event["response_model"])
    usage = Usage(input_tokens=event["input_tokens"], cache_read_tokens=event["cache_read_tokens"],
                  cache_write_tokens=event["cache_write_tokens"], output_tokens=event["output_tokens"])
    return calc_price(usage, model_ref=model, provider_id=provider,
                      genai_request_timestamp=ts(event["occurred_at"])).total_price


# --- the wire format and the manifest -----------------------------------------------------------


def test_manifest_file_is_the_returned_manifest(run):
    assert json.loads((run.dir / "manifest.json").read_text()) == run.manifest
    assert run.manifest["schema"] == "yieldmeter.simulate/1"
    assert run.manifest["seed"] == OPTIONS.seed and run.manifest["options"]["events"] == OPTIONS.events


def test_every_line_is_a_contract_event_except_the_planted_malformed_ones(run):
    """The generator writes JSON by hand for speed: it must be exactly what the contract writes."""
    rejected = Counter()
    for n, line in enumerate(run.usage_lines, 1):
        if n in run.malformed:
            with pytest.raises(ContractError) as error:
                parse_usage(line, now=NOW)
            rejected[error.value.errors[0]["type"]] += 1
        else:
            assert to_json_bytes(parse_usage(line, now=NOW)) == line, f"line {n}"
    for line in run.outcome_lines:
        assert to_json_bytes(parse_outcome(line, now=NOW)) == line
    planted = run.manifest["planted"]["malformed"]
    assert sum(rejected.values()) == planted["count"] == len(run.malformed) > 0
    assert len(planted["by_kind"]) >= 4, "several kinds of breakage"


def test_totals_and_counts_match_the_output(run):
    totals, m = run.manifest["totals"], run.manifest
    assert len(run.usage_lines) == totals["usage_lines"]
    assert len(run.events) == totals["valid_usage_lines"]
    assert len(run.unique) == totals["valid_usage_events"]
    assert totals["usage_lines"] == totals["valid_usage_events"] + totals["duplicates"] + totals["malformed"]
    assert len(run.outcomes) == totals["outcomes"]
    assert sum(o["success"] for o in run.outcomes) == totals["successful_outcomes"]
    assert Counter(e["status"] for e in run.unique) == totals["status"]
    assert sum(e["retry_of"] is not None for e in run.unique) == totals["retries"] > 0
    assert sum(e["input_tokens"] + e["output_tokens"] for e in run.unique) == totals["tokens"]
    by_org = Counter(e["org_id"] for e in run.unique)
    assert {org: c["usage_events"] for org, c in m["per_org"].items()} == by_org
    assert Counter(e["app"] for e in run.unique) == {app: c["usage_events"] for app, c in m["per_app"].items()}
    outcomes_by_org = Counter(o["org_id"] for o in run.outcomes)
    assert {org: c["outcomes"] for org, c in m["per_org"].items()} == outcomes_by_org
    rows = Counter()
    for e in run.unique:
        rows[(e["provider"], e["request_model"], e["response_model"], e["service_tier"])] += 1
    assert rows == {(r["provider"], r["request_model"], r["response_model"], tier): n
                    for r in m["models"] for tier, n in r["service_tiers"].items()}


def test_volume_is_near_the_request_and_inside_the_span(run):
    assert abs(len(run.unique) - OPTIONS.events) / OPTIONS.events < 0.1
    times = [ts(e["occurred_at"]) for e in run.unique] + [ts(o["occurred_at"]) for o in run.outcomes]
    assert OPTIONS.start <= min(times) and max(times) < OPTIONS.end


@pytest.mark.parametrize(("events", "days", "start"), [(3_000, 3, datetime(2026, 10, 1, tzinfo=UTC)),
                                                       (15_000, 30, datetime(2026, 9, 1, tzinfo=UTC))])
def test_volume_and_span_options(tmp_path, events, days, start):
    out = generate(tmp_path, SimulationOptions(events=events, days=days, seed=3, start=start))
    assert abs(len(out.unique) - events) / events < 0.2  # small workloads: few sessions, heavy tails
    times = [ts(e["occurred_at"]) for e in out.unique]
    assert start <= min(times) and max(times) < start + timedelta(days=days)
    assert max(times) - min(times) > timedelta(days=days - 1)
    assert out.manifest["options"]["start"] == start.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_the_realistic_shape(run):
    ok = [e for e in run.unique if e["status"] == "ok"]
    assert all(e["cache_read_tokens"] + e["cache_write_tokens"] <= e["input_tokens"] for e in run.unique)
    assert all(e["reasoning_tokens"] <= e["output_tokens"] for e in run.unique)
    assert sum(e["cache_read_tokens"] > 0 for e in ok) > len(ok) / 4
    assert any(e["cache_write_tokens"] > 0 for e in ok if e["provider"] == "anthropic")
    assert all(e["reasoning_tokens"] > 0 for e in ok if e["request_model"].startswith(("o3", "o4-mini")))
    assert {e["service_tier"] for e in run.unique} == {"default", "batch", "flex"}
    assert {e["status"] for e in run.unique} == {"ok", "error", "cancelled"}
    retried = {e["retry_of"] for e in run.unique if e["retry_of"]}
    by_id = {e["event_id"]: e for e in run.unique}
    assert all(by_id[i]["status"] == "error" for i in retried)
    # heavy tails: the largest outputs are far above the median
    outputs = sorted(e["output_tokens"] for e in ok)
    assert outputs[-len(outputs) // 1000] > 10 * statistics.median(outputs)
    assert any(e["request_model"] != e["response_model"] for e in ok)  # dated snapshots answer
    values = [Decimal(o["value_usd"]) for o in run.outcomes if o["value_usd"] is not None]
    assert values and all(o["outcome_type"] == "lead_qualified" and o["success"]
                          for o in run.outcomes if o["value_usd"] is not None)


# --- models and prices ------------------------------------------------------------------------


def test_every_simulated_model_but_the_planted_one_is_priced_by_genai_prices():
    """The price catalog is seeded from genai-prices: every id the simulator sends must find a price."""
    for key, model in MODELS.items():
        catalogue = {normalize_model(model.provider, request) for request, _ in model.requests}
        catalogue.add(normalize_model(model.provider, model.response))
        assert len(catalogue) == 1, f"{key}: request and response ids normalise differently: {catalogue}"
        usage = Usage(input_tokens=1000, output_tokens=100)
        if key == UNPRICED_MODEL:
            with pytest.raises(LookupError):
                calc_price(usage, model_ref=catalogue.pop(), provider_id=model.provider)
        else:
            assert calc_price(usage, model_ref=catalogue.pop(), provider_id=model.provider).total_price > 0


def test_manifest_models_carry_their_catalogue_ids(run):
    for row in run.manifest["models"]:
        assert row["catalogue_id"] == normalize_model(row["provider"], row["response_model"])
        assert row["priced_by_genai_prices"] == (row["request_model"] != UNPRICED_MODEL)


def test_every_service_tier_used_has_a_genai_prices_price(run):
    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    variants = {"batch": ("processing", "batch"), "flex": ("service_tier", "flex")}
    providers = get_snapshot().providers
    for row in run.manifest["models"]:
        for tier in set(row["service_tiers"]) - {"default"}:
            model = find_provider_by_id(providers, row["provider"]).find_model(row["catalogue_id"])
            assert any(variants[tier] in v.when.items() for v in model.price_variants or ()), (row, tier)


def test_unpriced_model_events_are_the_listed_ones(run):
    planted = run.manifest["planted"]["unpriced_model"]
    ids = [e["event_id"] for e in run.unique if e["request_model"] == UNPRICED_MODEL]
    assert sorted(ids) == sorted(planted["event_ids"]) and len(ids) == planted["usage_events"] > 0
    assert {(e["org_id"], e["app"], e["provider"]) for e in run.unique if e["event_id"] in set(ids)} == {
        (planted["org_id"], planted["app"], planted["provider"])}
    assert len(ids) < len(run.unique) / 100  # a few


# --- delivery faults --------------------------------------------------------------------------


def test_duplicates_are_identical_redeliveries(run):
    planted = run.manifest["planted"]["duplicates"]
    seen: dict[str, bytes] = {}
    repeated = []
    for n, line in enumerate(run.usage_lines, 1):
        if n in run.malformed:
            continue
        event_id = json.loads(line)["event_id"]
        if event_id in seen:
            assert seen[event_id] == line
            repeated.append({"event_id": event_id, "position": n})
        seen[event_id] = line
    assert repeated == planted["events"] and len(repeated) == planted["count"] > 0


def test_late_events_arrive_after_later_events(run):
    planted = run.manifest["planted"]["late"]
    late = {entry["position"]: entry for entry in planted["events"]}
    assert len(late) == planted["count"] > 0
    newest = datetime.min.replace(tzinfo=UTC)
    duplicates = {d["position"] for d in run.manifest["planted"]["duplicates"]["events"]}
    for n, line in enumerate(run.usage_lines, 1):
        if n in run.malformed:
            continue
        event = json.loads(line)
        at = ts(event["occurred_at"])
        if n in late:
            assert late[n]["event_id"] == event["event_id"]
            assert newest - at >= timedelta(minutes=15), "a late event comes after much later ones"
        elif n not in duplicates:
            assert at >= newest, f"line {n}: only the planted late events are out of order"
            newest = at
    # outcomes are written in time order
    times = [o["occurred_at"] for o in run.outcomes]
    assert times == sorted(times)


# --- sessions, outcomes and idle sessions -----------------------------------------------------


def implicit_sessions(events: list[dict]) -> dict[tuple, list[list[dict]]]:
    """Calls without a session id grouped as the pipeline will: (org, user, app) + the inactivity gap."""
    by_key = defaultdict(list)
    for e in sorted(events, key=lambda e: e["occurred_at"]):
        if e["session_id"] is None:
            by_key[(e["org_id"], e["user_id"], e["app"])].append(e)
    sessions = {}
    for key, calls in by_key.items():
        groups = [[calls[0]]]
        for prev, call in zip(calls, calls[1:], strict=False):
            gap = ts(call["occurred_at"]) - ts(prev["occurred_at"])
            assert not timedelta(minutes=21) < gap < timedelta(minutes=35), f"{key}: ambiguous gap {gap}"
            if gap >= timedelta(seconds=INACTIVITY_GAP_S):
                groups.append([])
            groups[-1].append(call)
        sessions[key] = groups
    return sessions


def test_sessions_and_idle_sessions_match_the_manifest(run):
    per_app = run.manifest["per_app"]
    explicit = defaultdict(set)
    trace_of = {}
    for e in run.unique:
        if e["session_id"]:
            explicit[e["app"]].add(e["session_id"])
            trace_of[e["trace_id"]] = e["session_id"]
    with_outcome = defaultdict(set)
    for o in run.outcomes:
        if o["session_id"]:
            with_outcome[o["app"]].add(o["session_id"])
        elif o["trace_id"]:
            with_outcome[o["app"]].add(trace_of[o["trace_id"]])
    implicit = implicit_sessions(run.unique)
    for name, app in APPS.items():
        if app.explicit_session:
            sessions, linked = len(explicit[name]), len(with_outcome[name])
        else:
            sessions = sum(len(groups) for (_, _, a), groups in implicit.items() if a == name)
            linked = sum(1 for o in run.outcomes if o["app"] == name)
            assert not explicit[name]
        assert per_app[name]["sessions"] == sessions, name
        assert per_app[name]["idle_sessions"] == sessions - linked, name
        assert per_app[name]["outcome_link"] == app.link
    idle = run.manifest["planted"]["idle_sessions"]
    assert idle["idle"] == sum(a["idle_sessions"] for a in per_app.values())
    assert 0.1 < idle["share"] < 0.5


def test_user_time_outcomes_follow_exactly_one_implicit_session(run):
    implicit = implicit_sessions(run.unique)
    for o in (o for o in run.outcomes if o["session_id"] is None and o["trace_id"] is None):
        at = ts(o["occurred_at"])
        groups = implicit[(o["org_id"], o["user_id"], o["app"])]
        ended_before = [g for g in groups if timedelta(0) < at - ts(g[-1]["occurred_at"]) <= timedelta(minutes=16)]
        assert len(ended_before) == 1
        assert not any(ts(g[0]["occurred_at"]) <= at <= ts(g[-1]["occurred_at"]) for g in groups)


def test_every_explicit_session_uses_one_model(run):
    models = defaultdict(set)
    for e in run.unique:
        if e["session_id"]:
            models[e["session_id"]].add(normalize_model(e["provider"], e["request_model"]))
    assert all(len(m) == 1 for m in models.values())


# --- planted behaviours, recomputed from the output -------------------------------------------


def user_table(run) -> dict[tuple, dict]:
    start = OPTIONS.start
    table = defaultdict(lambda: {"tokens": 0, "successes": 0, "weekly_tokens": Counter(), "weekly_successes": Counter(),
                                 "weekly_sessions": defaultdict(set)})
    for e in run.unique:
        row = table[(e["org_id"], e["app"], e["user_id"])]
        week = (ts(e["occurred_at"]) - start).days // 7
        row["tokens"] += e["input_tokens"] + e["output_tokens"]
        row["weekly_tokens"][week] += e["input_tokens"] + e["output_tokens"]
        row["weekly_sessions"][week].add(e["session_id"])
    for o in run.outcomes:
        if o["success"]:
            row = table[(o["org_id"], o["app"], o["user_id"])]
            row["successes"] += 1
            row["weekly_successes"][(ts(o["occurred_at"]) - start).days // 7] += 1
    return table


def peers(run, table, org: str, app: str) -> list[dict]:
    planted = {p["user_id"] for kind in ("tokenmaxxers", "honest_heavy_users") for p in run.manifest["planted"][kind]}
    return [row for (o, a, user), row in table.items() if o == org and a == app and user not in planted]


def per_success(row: dict) -> float:
    return row["tokens"] / max(row["successes"], 1)


def test_tokenmaxxers_burn_tokens_without_outcomes_and_rise_week_over_week(run):
    table = user_table(run)
    planted = run.manifest["planted"]["tokenmaxxers"]
    assert 2 <= len(planted) <= 3
    for t in planted:
        row = table[(t["org_id"], t["app"], t["user_id"])]
        assert (row["tokens"], row["successes"]) == (t["tokens"], t["successes"])
        others = peers(run, table, t["org_id"], t["app"])
        assert len(others) >= 3
        assert row["tokens"] > 2 * statistics.median(p["tokens"] for p in others)
        assert per_success(row) > 3 * statistics.median(per_success(p) for p in others), t["user_id"]
        week0, week1 = row["weekly_tokens"][0], row["weekly_tokens"][1]
        assert week1 > 1.2 * week0, f"{t['user_id']}: volume rises week over week"
        assert len(row["weekly_sessions"][1]) > 1.2 * len(row["weekly_sessions"][0])
        s0, s1 = row["weekly_successes"][0], row["weekly_successes"][1]
        assert s1 <= 1.5 * s0 + 3, f"{t['user_id']}: outcomes stay flat ({s0} -> {s1})"


def test_honest_heavy_users_have_volume_and_yield(run):
    table = user_table(run)
    planted = run.manifest["planted"]["honest_heavy_users"]
    assert planted
    for h in planted:
        row = table[(h["org_id"], h["app"], h["user_id"])]
        others = peers(run, table, h["org_id"], h["app"])
        assert row["tokens"] > 2 * statistics.median(p["tokens"] for p in others)
        assert per_success(row) <= 1.2 * statistics.median(per_success(p) for p in others), h["user_id"]


def test_model_overkill_succeeds_no_more_often_at_many_times_the_cost(run):
    sessions = {}
    for e in run.unique:
        if e["session_id"]:
            s = sessions.setdefault(e["session_id"], {"org": e["org_id"], "app": e["app"], "team": e["team"],
                                                      "trace": e["trace_id"], "cost": Decimal(0), "success": False,
                                                      "model": normalize_model(e["provider"], e["request_model"])})
            if s["model"] != UNPRICED_MODEL:
                s["cost"] += price(e)
    for spike_session in run.manifest["planted"]["spend_spike"]["session_ids"]:  # runaway loops, not tasks
        del sessions[spike_session]
    by_trace = {s["trace"]: s for s in sessions.values()}
    for o in run.outcomes:
        s = sessions.get(o["session_id"]) or by_trace.get(o["trace_id"])
        if s is not None and o["success"]:
            s["success"] = True
    for planted in run.manifest["planted"]["model_overkill"]:
        expensive = planted["expensive_model"]["catalogue_id"]
        cheaper = {m["catalogue_id"] for m in planted["cheaper_models"]}
        mine = [s for s in sessions.values() if (s["org"], s["app"], s["model"]) == (planted["org_id"],
                planted["app"], expensive) and (planted["team"] is None or s["team"] == planted["team"])]
        theirs = [s for s in sessions.values() if (s["org"], s["app"]) == (planted["org_id"], planted["app"])
                  and s["model"] in cheaper and (planted["team"] is None or s["team"] in planted["cheaper_teams"])]
        assert len(mine) == planted["expensive_model"]["sessions"] and len(theirs) == planted["cheaper"]["sessions"]
        assert sum(s["success"] for s in mine) == planted["expensive_model"]["successes"]
        # Equal success rates by construction; allow three standard errors of sampling noise.
        p_mine, p_theirs = (sum(s["success"] for s in g) / len(g) for g in (mine, theirs))
        pooled = (p_mine * len(mine) + p_theirs * len(theirs)) / (len(mine) + len(theirs))
        se = math.sqrt(pooled * (1 - pooled) * (1 / len(mine) + 1 / len(theirs)))
        assert p_mine < p_theirs + 3 * se, "the expensive model does not succeed more often"
        cost = lambda group: sum(s["cost"] for s in group) / len(group)  # noqa: E731
        assert cost(mine) > 3 * cost(theirs)


def test_spend_spike_is_ten_times_a_normal_hour(run):
    spike = run.manifest["planted"]["spend_spike"]
    hourly = defaultdict(Decimal)
    calls = Counter()
    for e in run.unique:
        if (e["org_id"], e["team"], e["app"]) == (spike["org_id"], spike["team"], spike["app"]):
            hour = e["occurred_at"][:13]
            hourly[hour] += price(e)
            calls[hour] += 1
    spike_hour = spike["hour_start"][:13]
    # Normal is the same hour of the day on the other days (heavy tails: one long session can
    # make some other hour of the fortnight expensive too, so the comparison is like for like).
    same_hour = [cost for hour, cost in hourly.items() if hour != spike_hour and hour[11:13] == spike_hour[11:13]]
    assert hourly[spike_hour] > max(same_hour)
    weekdays = [cost for hour, cost in hourly.items() if hour != spike_hour and hour[11:13] == spike_hour[11:13]
                and datetime.fromisoformat(hour[:10]).weekday() < 5]
    assert hourly[spike_hour] > 5 * statistics.median(weekdays)
    assert calls[spike_hour] >= spike["spike_calls"]
    in_spike = {e["session_id"] for e in run.unique if e["session_id"] in set(spike["session_ids"])}
    assert in_spike == set(spike["session_ids"])
    assert not any(o["session_id"] in in_spike or o["trace_id"] in in_spike for o in run.outcomes)


# --- determinism, options, CLI -----------------------------------------------------------------


SMALL = SimulationOptions(events=3_000, days=3, seed=11)
FILES = ("usage.jsonl", "outcomes.jsonl", "manifest.json")


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    simulate(SMALL, FileSink(tmp_path / "a"))
    simulate(SMALL, FileSink(tmp_path / "b"))
    simulate(SimulationOptions(events=3_000, days=3, seed=12), FileSink(tmp_path / "c"))
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"events": 10}, "events"),
    ({"days": 0}, "days"),
    ({"start": datetime(2026, 11, 2, 12, tzinfo=UTC)}, "midnight"),
    ({"start": datetime(2026, 11, 2)}, "midnight UTC"),
    ({"malformed_share": 0.5}, "malformed_share"),
])
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulationOptions(**kwargs)


def cli(*args: str, tmp_path):
    from yieldmeter.cli import app

    env = {"YIELDMETER_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    return CliRunner().invoke(app, ["simulate", *args], env=env)


def test_cli_writes_files_and_prints_what_was_planted(tmp_path):
    result = cli("--events", "2000", "--days", "2", "--seed", "5", "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert result.exit_code == 0, result.output
    for name in FILES:
        assert (tmp_path / "out" / name).stat().st_size > 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["options"]["days"] == 2
    for word in ("tokenmaxxer", "honest heavy", "model overkill", "spend spike", "unpriced model", "malformed"):
        assert word in result.output
    assert manifest["planted"]["tokenmaxxers"][0]["user_id"] in result.output


def test_cli_defaults_to_the_state_folder(tmp_path):
    result = cli("--events", "500", "--days", "1", tmp_path=tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "state" / "simulate" / "manifest.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "x", "--to-kafka"], "choose one"),
    (["--manifest", "m.json"], "--manifest goes with --to-kafka"),
    (["--start", "2026-11-02T10:00:00Z"], "midnight UTC"),
    (["--start", "yesterday"], "give a date"),
    (["--start", "2999-01-01", "--to-kafka"], "in the future"),
])
def test_cli_refuses_options_that_cannot_work(tmp_path, args, message):
    from yieldmeter.errors import YieldmeterError

    result = cli(*args, tmp_path=tmp_path)
    assert isinstance(result.exception, YieldmeterError)
    assert message in str(result.exception)


def test_every_simulated_model_is_in_the_published_catalog():
    """The pipeline joins on (provider as sent, catalogue model id): a provider spelled
    differently from the catalog (e.g. 'google' instead of OTel's 'gcp.gemini') prices nothing."""
    from yieldmeter.normalize import normalize_model
    from yieldmeter.prices import build_catalog
    from yieldmeter.simulate import MODELS, UNPRICED_MODEL

    catalog = {(r.provider, r.model) for r in build_catalog().prices.values() if r.service_tier == "default"}
    for name, model in MODELS.items():
        if name == UNPRICED_MODEL:
            continue
        for request_model, _ in (*model.requests, (model.response, 1.0)):
            assert (model.provider, normalize_model(model.provider, request_model)) in catalog, (name, request_model)
