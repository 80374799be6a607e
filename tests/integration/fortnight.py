"""A small, realistic fortnight of calls, sessions, outcomes and alert notices for the report and
metric tests: rows inserted directly as the ingest stores them (the path from Kafka to these
tables is tested elsewhere); `calls_hourly` is filled by its real materialized view. Planted: a
tokenmaxxer, model overkill, a spend spike, idle spend and a self-hosted model with no price."""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from yieldmeter.alerts.model import Event, Notice, Severity
from yieldmeter.alerts.store import IncidentStore

START = datetime(2025, 3, 3, tzinfo=timezone.utc)  # a Monday
DAYS = 14  # two weeks: the tokenmaxxing mart compares week over week
NOW = START + timedelta(days=DAYS)
MTOK = Decimal(1_000_000)

# USD per million input / output tokens (list prices of early 2025)
PRICES = {
    "claude-sonnet-4": (Decimal("3"), Decimal("15")), "claude-opus-4": (Decimal("15"), Decimal("75")),
    "claude-3-5-haiku": (Decimal("0.8"), Decimal("4")), "gpt-4.1": (Decimal("2"), Decimal("8")),
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.6")), "gemini-2.5-flash": (Decimal("0.3"), Decimal("2.5")),
}
PROVIDER = {"claude": "anthropic", "gpt": "openai", "gemini": "gcp.gemini", "acme": "vllm"}


@dataclass(frozen=True)
class Team:
    org: str
    team: str
    app: str
    outcome: str  # the outcome type the app reports
    model: str
    users: int
    sessions: float  # per user and weekday
    calls: int  # per session (mean)
    context: int  # input tokens of a session's first call (median)
    output: int  # output tokens per call (median)
    p_outcome: float  # share of sessions that report an outcome
    p_success: float  # share of those outcomes that succeed
    value: tuple[int, int] | None = None  # USD range of a successful outcome's value


WORLD = [
    Team("acme", "support", "support-bot", "ticket_resolved", "claude-sonnet-4", 7, 5, 4, 3000, 300, .8, .85),
    Team("acme", "platform", "coding-agent", "pr_merged", "gpt-4.1", 7, 3, 7, 12000, 800, .55, .7),
    Team("initech", "engineering", "coding-agent", "pr_merged", "claude-sonnet-4", 6, 3, 7, 10000, 700, .55, .72),
    # planted overkill: the same org, app and work as support-us, on a five times dearer model
    Team("globex", "support-emea", "support-bot", "ticket_resolved", "claude-opus-4", 5, 5, 4, 3000, 300, .8, .85),
    Team("globex", "support-us", "support-bot", "ticket_resolved", "claude-3-5-haiku", 5, 5, 4, 3000, 300, .8, .84),
    Team("globex", "sales", "sales-assistant", "lead_qualified", "gemini-2.5-flash", 4, 4, 3, 2000, 400, .6, .5,
         value=(50, 400)),
    # idle spend: a summarizer whose outcomes nobody reports
    Team("globex", "research", "doc-summarizer", "task_completed", "gpt-4o-mini", 3, 3, 2, 8000, 500, 0, 0),
]
TOKENMAXXER = ("acme", "platform", "acme-platform-u7", "coding-agent")  # second week: 4x sessions, 2.5x context
SPIKE = ("globex", "support-us", START + timedelta(days=9, hours=14))  # a bot in a loop for two hours

CALL_COLUMNS = ["event_id", "occurred_at", "org_id", "team", "user_id", "app", "provider", "request_model",
                "response_model", "model", "operation", "service_tier", "input_tokens", "cache_read_tokens",
                "output_tokens", "session_id", "session_key", "trace_id", "status", "pricing_status", "price_id",
                "cost_input_usd", "cost_output_usd", "list_cost_usd", "cost_usd", "source_topic"]
SESSION_COLUMNS = ["session_uid", "session_key", "is_correction", "org_id", "team", "user_id", "app", "session_id",
                   "started_at", "ended_at", "calls", "errors", "unpriced_calls", "input_tokens",
                   "cache_read_tokens", "output_tokens", "max_input_tokens", "models_used", "list_cost_usd",
                   "cost_usd"]
OUTCOME_COLUMNS = ["outcome_id", "occurred_at", "org_id", "team", "user_id", "app", "session_id", "outcome_type",
                   "success", "value_usd", "schema_version"]


def _price(model: str, tokens_in: int, tokens_out: int) -> tuple[Decimal, Decimal]:
    if model not in PRICES:
        return Decimal(0), Decimal(0)
    rate_in, rate_out = PRICES[model]
    return tokens_in * rate_in / MTOK, tokens_out * rate_out / MTOK


def fill_warehouse(client) -> dict:
    """A fortnight of a few teams' work; returns the totals the report must show."""
    rng = random.Random(8)
    calls, sessions, outcomes = [], [], []
    hours = [h for h in range(24)]
    weights = [0.2 if h < 7 or h > 20 else (3 if 9 <= h <= 17 else 1) for h in hours]

    def session(team: Team, user: str, start: datetime, n_calls: int, context: float, success_p: float,
                model: str, with_outcome: bool) -> None:
        sid = uuid.UUID(int=rng.getrandbits(128)).hex
        key = f"{team.org}|{sid}"
        at, totals = start, [0, 0, Decimal(0), 0]
        for i in range(n_calls):
            tokens_in = int(rng.lognormvariate(0, 0.4) * context * (1 + 0.3 * i))
            tokens_out = int(rng.lognormvariate(0, 0.5) * team.output)
            cached = tokens_in // 3 if i else 0
            cost_in, cost_out = _price(model, tokens_in, tokens_out)
            priced = model in PRICES
            calls.append([uuid.UUID(int=rng.getrandbits(128)).hex, at, team.org, team.team, user, team.app,
                          next(p for k, p in PROVIDER.items() if model.startswith(k)), model, model, model, "chat",
                          "default", tokens_in, cached, tokens_out, sid, key, "", "ok",
                          "priced" if priced else "unpriced", f"{model}@2025-01-01" if priced else "",
                          cost_in, cost_out, cost_in + cost_out, cost_in + cost_out, "usage.events"])
            totals = [totals[0] + tokens_in, totals[1] + tokens_out, totals[2] + cost_in + cost_out,
                      max(totals[3], tokens_in)]
            at += timedelta(seconds=rng.uniform(15, 90))
        sessions.append([hashlib.md5(f"{key}|{start}".encode()).hexdigest(), key, False, team.org, team.team, user,
                         team.app, sid, start, at, n_calls, 0, 0 if model in PRICES else n_calls, totals[0], 0,
                         totals[1], totals[3], [model], totals[2], totals[2]])
        if with_outcome:
            success = rng.random() < success_p
            value = Decimal(rng.randint(*team.value)) if team.value and success else None
            outcomes.append([uuid.UUID(int=rng.getrandbits(128)).hex, at + timedelta(seconds=60), team.org, team.team,
                             user, team.app, sid, team.outcome, success, value, 1])

    for team in WORLD:
        for u in range(1, team.users + 1):
            user = f"{team.org}-{team.team}-u{u}"
            heavy = 1 + (u % 3) * 0.5  # some users simply work more
            for day in range(DAYS):
                date = START + timedelta(days=day)
                weekend = date.weekday() >= 5
                maxxing = (team.org, team.team, user, team.app) == TOKENMAXXER and day >= 7
                n = team.sessions * heavy * (0.2 if weekend else 1) * (4 if maxxing else 1)
                for _ in range(int(n) + (rng.random() < n % 1)):
                    start = date + timedelta(hours=rng.choices(hours, weights)[0], minutes=rng.uniform(0, 59))
                    session(team, user, start, max(1, int(rng.gauss(team.calls, 1.5))),
                            team.context * (2.5 if maxxing else 1), team.p_success * (0.3 if maxxing else 1),
                            team.model, rng.random() < team.p_outcome)
    spike_team = next(t for t in WORLD if (t.org, t.team) == SPIKE[:2])
    # a bot in a loop: one session of 150 calls, its context growing with every call, nothing resolved
    session(spike_team, f"{spike_team.org}-{spike_team.team}-bot", SPIKE[2], 150, spike_team.context, 0,
            spike_team.model, False)
    platform = next(t for t in WORLD if t.team == "platform")
    for day in range(DAYS):  # a self-hosted model no price library knows
        session(platform, "acme-platform-u2", START + timedelta(days=day, hours=11), 3, 4000, 0.7,
                "acme-internal-llm-v1", False)

    client.insert("calls", calls, column_names=CALL_COLUMNS)
    client.insert("sessions", sessions, column_names=SESSION_COLUMNS)
    client.insert("outcomes", outcomes, column_names=OUTCOME_COLUMNS)
    IncidentStore(client).add_notices(notices())
    return {"cost": sum((c[CALL_COLUMNS.index("cost_usd")] for c in calls), Decimal(0)), "calls": len(calls),
            "successes": sum(o[OUTCOME_COLUMNS.index("success")] for o in outcomes),
            "unpriced": sum(c[CALL_COLUMNS.index("pricing_status")] != "priced" for c in calls)}


def notices() -> list[Notice]:
    """What the alert engine would have stored: an open spike, an open unpriced model, a resolved incident."""

    def notice(event, rule, entity, severity, title, summary, value, baseline, unit, opened, evaluated, incident):
        key = "/".join([rule, *(f"{k}={v}" for k, v in entity.items())])
        return Notice(str(uuid.uuid4()), incident, event, rule, key, severity, title, summary, entity,
                      Decimal(value), Decimal(baseline), Decimal(value), unit, evaluated - timedelta(hours=1), opened,
                      evaluated, "SELECT model, sum(cost_usd) FROM calls_hourly WHERE "
                      + " AND ".join(f"{k} = '{v}'" for k, v in entity.items()) + " GROUP BY model", {}, "default")

    spike_at = SPIKE[2] + timedelta(hours=1, minutes=5)
    spike, unpriced, errors = (str(uuid.uuid4()) for _ in range(3))
    return [
        notice(Event.OPENED, "spend_spike", {"org": "globex", "team": "support-us"}, Severity.CRITICAL,
               "Spend spike: globex / support-us", "*$4.12* spent in the hour from 14:00 UTC against a baseline of "
               "*$0.31* (median of the previous 168 hours).", "4.12", "0.31", "USD/hour", spike_at, spike_at, spike),
        notice(Event.OPENED, "unpriced_model", {"provider": "vllm", "model": "acme-internal-llm-v1"},
               Severity.WARNING, "Unpriced model: vllm / acme-internal-llm-v1", "*42* calls to "
               "`vllm/acme-internal-llm-v1` have no known price. Add a price (`yieldmeter prices`).", "42", "0",
               "unpriced calls/24h", START + timedelta(days=1, hours=12), NOW - timedelta(hours=2), unpriced),
        notice(Event.OPENED, "error_rate_spike", {"org": "acme", "team": "support", "app": "support-bot"},
               Severity.WARNING, "Error-rate spike: acme / support / support-bot", "*18.0%* of calls failed.",
               "0.18", "0.02", "share", START + timedelta(days=4, hours=10), START + timedelta(days=4, hours=10),
               errors),
        notice(Event.RESOLVED, "error_rate_spike", {"org": "acme", "team": "support", "app": "support-bot"},
               Severity.WARNING, "Error-rate spike: acme / support / support-bot", "Back to normal.", "0.01",
               "0.02", "share", START + timedelta(days=4, hours=10), START + timedelta(days=4, hours=13), errors),
    ]


def store_budgets(client, budgets) -> None:
    """Store Budget records in the warehouse's `budgets` table as the ingest does (the record's
    JSON, its id as the Kafka key, the Kafka metadata), without a broker."""
    from yieldmeter.contracts import to_json_bytes
    from yieldmeter.ingest import INSERT_SETTINGS

    rows = [to_json_bytes(b)[:-1] + b',"budget_id":"%s","_topic":"usage.budgets","_partition":0,"_offset":%d,'
            b'"_timestamp":0}' % (b.budget_id.encode(), offset) for offset, b in enumerate(budgets)]
    client.raw_insert("budgets", insert_block=b"\n".join(rows), fmt="JSONEachRow", settings=INSERT_SETTINGS)
