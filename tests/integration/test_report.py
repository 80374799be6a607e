"""The HTML report on the real ClickHouse engine (chdb), opened in headless Chromium.

The warehouse is migrated with the real migrations and filled with a small, realistic
fortnight of calls, sessions, outcomes and alert notices (rows inserted directly: the report
reads tables, and the path from Kafka to these tables is tested elsewhere). `calls_hourly`
is filled by its real materialized view from the `calls` inserts. One test reads the raw
tables only (the marts missing: those sections must say so); one runs the real dbt project
first, so the tokenmaxxing and overkill sections draw from the marts.
"""

from __future__ import annotations

import hashlib
import html.parser
import random
import re
import os
import shutil
import struct
import subprocess
import sys
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_settings
from yieldmeter.alerts.model import Event, Notice, Severity
from yieldmeter.alerts.store import IncidentStore
from yieldmeter.report import NOT_BUILT, usd, write_report
from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration

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


# --- reading what Chromium drew --------------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("Chromium is not installed: `make setup` installs it (apt-get install chromium).")


def browse(report: Path, tmp_path: Path) -> tuple[str, Path]:
    """The DOM after Chromium loaded the file, and a screenshot of it."""
    png = tmp_path / "report.png"
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,4000"]
    dom = subprocess.run([*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = subprocess.run([*base, f"--screenshot={png}", report.as_uri()], capture_output=True, text=True,
                          timeout=120)
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    return dom.stdout, png


class Shapes(html.parser.HTMLParser):
    """Counts the SVG shapes inside each <section id=...> of the rendered DOM."""

    def __init__(self):
        super().__init__()
        self.section, self.counts = None, Counter()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
        elif self.section:
            self.counts[self.section, tag, attrs.get("class")] += 1


def png_colours(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct colours) of an 8-bit RGB/RGBA PNG, decoded with zlib and numpy."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.setdefault(kind, []).append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
    bpp = 3 if colour_type == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(chunks[b"IDAT"])), dtype=np.uint8).reshape(height, -1)
    rows, previous = np.zeros((height, width * bpp), dtype=np.uint8), np.zeros(width * bpp, dtype=np.int32)
    for y in range(height):  # undo the per-row filters (PNG spec, section 9)
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            out = line
        elif kind == 2:
            out = (line + previous) & 0xFF
        elif kind == 1:  # Sub: a running sum per channel
            out = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) & 0xFF
        else:  # Average and Paeth depend on the pixel to the left: one pixel at a time
            out = line.copy()
            for x in range(len(out)):
                a = out[x - bpp] if x >= bpp else 0
                b, c = previous[x], previous[x - bpp] if x >= bpp else 0
                if kind == 3:
                    out[x] = (out[x] + (a + b) // 2) & 0xFF
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    out[x] = (out[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows[y], previous = out, out
    pixels = rows.reshape(-1, bpp)[:, :3].astype(np.uint32)
    return width, height, len(np.unique((pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]))


def assert_self_contained(text: str) -> None:
    assert "<script" not in text.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I), "an external reference"
    assert not re.search(r"""@import|url\(\s*["']?(?:https?:)?//""", text, re.I), "an external stylesheet or font"


# --- the tests ------------------------------------------------------------------------------------


@pytest.fixture
def warehouse(warehouse_url):
    with open_warehouse(warehouse_url) as client:
        migrate(client)
        totals = fill_warehouse(client)
    return warehouse_url, totals


def test_report_from_the_raw_tables_renders_in_chromium(warehouse, tmp_path):
    url, totals = warehouse
    with open_warehouse(url) as client:
        path = write_report(client, tmp_path / "report.html", now=NOW)
        # over two weeks, spend is drawn per day: the same total, fewer points
        daily = write_report(client, tmp_path / "daily.html", now=NOW + timedelta(days=10)).read_text()
    assert "Peak day:" in daily and usd(totals["cost"]) in daily and "(24 days)" in daily
    text = path.read_text()
    assert_self_contained(text)
    assert 10_000 < path.stat().st_size < 300_000

    # the headline is exact: Decimal from the calls to the page
    assert usd(totals["cost"]) in text and f"{totals['calls']:,}" in text
    assert "2025-03-03 00:00 – 2025-03-17 00:00 UTC (14 days)" in text
    assert f"{totals['unpriced']:,} of {totals['calls']:,} calls" in text  # the unpriced warning
    per_success = usd(totals["cost"] / totals["successes"])
    assert per_success in text
    # without the marts: the sections that need them say how to get them
    transform_note = NOT_BUILT.replace("`yieldmeter transform`", "<code>yieldmeter transform</code>")
    assert text.count(transform_note) >= 3  # idle share, tokenmaxxing flags, model overkill
    assert "no successful outcome" in text  # the doc-summarizer's spend bought nothing

    dom, png = browse(path, tmp_path)
    shapes = Shapes()
    shapes.feed(dom)
    counts = shapes.counts
    assert counts["spend", "path", "area"] >= 5  # one stacked area per team
    assert counts["cost-per-outcome", "rect", "bar"] >= 5
    assert counts["value-volume", "circle", "dot"] >= 30  # one point per user and app
    assert counts["alerts", "tr", None] == 4  # header + three incidents (latest state of each)
    assert counts["overkill", "p", "missing"] == 1
    assert "Spend spike: globex / support-us" in dom

    width, height, colours = png_colours(png)
    assert (width, height) == (1280, 4000)
    assert png.stat().st_size > 50_000 and colours > 50, (png.stat().st_size, colours)
    shutil.copy(png, Path(tmp_path.parent / "report-raw.png"))


def test_report_with_the_dbt_marts(warehouse, tmp_path):
    from yieldmeter.transform import transform

    url, _ = warehouse
    settings = make_settings(tmp_path / "state", clickhouse_url=url)
    run = transform(settings, ["run", "--select", "+value_metrics_daily +model_overkill +tokenmaxxing_signals"])
    assert run.success, run.failures()
    with open_warehouse(url) as client:
        path = write_report(client, tmp_path / "report.html", now=NOW)
    text = path.read_text()
    assert_self_contained(text)
    assert NOT_BUILT.split(":")[0] not in text  # every section has its data

    dom, png = browse(path, tmp_path)
    shapes = Shapes()
    shapes.feed(dom)
    assert shapes.counts["value-volume", "g", "flagged"] >= 1
    assert "acme-platform-u7" in dom  # the planted tokenmaxxer is labelled
    assert shapes.counts["overkill", "rect", "bar"] >= 1
    assert "claude-opus-4 → claude-3-5-haiku" in dom
    _, _, colours = png_colours(png)
    assert colours > 50
    shutil.copy(png, Path(tmp_path.parent / "report-marts.png"))


def test_cli_writes_the_report(warehouse, tmp_path):
    url, totals = warehouse
    out = tmp_path / "out" / "report.html"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "YIELDMETER_STATE_DIR": str(tmp_path / "state"), "YIELDMETER_CLICKHOUSE_URL": url}
    done = subprocess.run([sys.executable, "-m", "yieldmeter", "report", "--out", str(out), "--days", "7"],
                          capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    # --days 7 up to the newest data: the second week only
    assert "report for 2025-03-10 00:00 – 2025-03-17 00:00 UTC (7 days)" in done.stdout
    assert "run `yieldmeter transform`" in done.stdout  # the marts are not built here
    assert out.exists() and usd(totals["cost"]) not in out.read_text()  # a week is not the fortnight


def test_cli_on_a_warehouse_without_tables_says_what_to_do(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "YIELDMETER_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "yieldmeter", "report"], capture_output=True, text=True, env=env,
                          timeout=180)
    assert done.returncode == 1 and "run `yieldmeter migrate` first" in done.stdout, done.stdout + done.stderr


def test_report_of_an_empty_warehouse_says_so(warehouse_url, tmp_path):
    with open_warehouse(warehouse_url) as client:
        migrate(client)
        text = write_report(client, tmp_path / "report.html", now=NOW, days=7).read_text()
    assert "2025-03-10 00:00 – 2025-03-17 00:00 UTC (7 days)" in text
    assert text.count("No calls in this period.") == 2 and "No alert fired in this period." in text
    assert "$0.00" in text  # total spend
