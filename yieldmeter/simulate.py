"""A synthetic but realistic LLM workload, with a ground-truth manifest of what was planted.

``simulate(options, sink)`` writes usage events and outcome events in the wire format of
:mod:`yieldmeter.contracts` (byte for byte what ``to_json_bytes`` writes) to a
:class:`FileSink` (usage.jsonl, outcomes.jsonl, manifest.json) or a :class:`KafkaSink`,
and returns the manifest: the options, the totals, and every planted behaviour with the
ids a detection test needs.

The workload: three orgs, teams of users, four apps (support-bot -> ticket_resolved,
coding-agent -> pr_merged, sales-assistant -> lead_qualified with value_usd,
doc-summarizer -> task_completed), real model ids of OpenAI, Anthropic and Google as the
providers return them (dated ids included), heavy-tailed token counts (lognormal bodies,
Pareto tails), prompt caching, reasoning tokens, retries, errors, cancellations, batch and
flex tiers. Planted on top: tokenmaxxers, honest heavy users (controls that must NOT be
flagged), model overkill, idle sessions, a spend spike, an unpriced model, malformed lines,
duplicates and late (out-of-order) events.

Determinism: everything comes from ``random.Random`` instances seeded from the seed (no
global random, no wall clock), so the same options give byte-identical output.

Memory: sessions are scheduled one day at a time (a few numbers per session) and their
events pass through a heap that only holds the sessions in flight and outcomes not yet
due; events go to the sink as soon as no earlier event can still come. Nothing else grows
with the number of events except small per-user counters and the manifest's id lists.

Speed: event dicts are built directly in the wire format and serialised with
pydantic-core (no model validation in the hot path); tests validate the output with
:func:`yieldmeter.contracts.parse_usage`.

Kafka: :class:`KafkaSink` produces through the producer SDK (``yieldmeter.sdk.UsageProducer``,
``send_raw``: the lines are already wire format, and malformed ones must reach the topic as
they are), keyed by the SDK's session key.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import statistics
from bisect import bisect
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any, Protocol

from pydantic_core import to_json

from yieldmeter.config import Settings

MANIFEST_SCHEMA = "yieldmeter.simulate/1"
DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday, midnight UTC
DEFAULT_DAYS = 14  # two weeks: enough for a week-over-week trend
DEFAULT_EVENTS = 100_000
INACTIVITY_GAP_S = 30 * 60
"""The sessionizer's default inactivity gap: calls without a session id keep gaps below it
inside a session and leave more than it (plus a margin) between sessions."""
SESSION_SEPARATION_S = INACTIVITY_GAP_S + 6 * 60
DAY_MS = 86_400_000
HOUR_MS = 3_600_000

# --- the world ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A model as a provider serves it: request ids as clients send them, the id it answers with."""

    provider: str
    requests: tuple[tuple[str, float], ...]  # request_model strings and how often each is sent
    response: str  # response_model as the provider returns it (OpenAI: dated snapshot)
    cache: str  # prompt caching style: anthropic (explicit read/write), openai/gemini (implicit read), none
    max_input: int
    max_output: int
    ms_per_token: float
    reasoning: tuple[float, float] | None = None  # share of output spent reasoning (low, high)
    reasoning_prob: float = 0.0  # share of calls that reason (Gemini Flash thinks on some)
    output_scale: float = 1.0  # reasoning models write more tokens in total

    @property
    def operation(self) -> str:
        return "generate_content" if self.provider == "gcp.gemini" else "chat"


MODELS: dict[str, Model] = {
    "gpt-4o": Model("openai", (("gpt-4o", 0.6), ("gpt-4o-2024-08-06", 0.4)), "gpt-4o-2024-08-06",
                    "openai", 128_000, 16_384, 12),
    "gpt-4o-mini": Model("openai", (("gpt-4o-mini", 0.7), ("gpt-4o-mini-2024-07-18", 0.3)),
                         "gpt-4o-mini-2024-07-18", "openai", 128_000, 16_384, 8),
    "gpt-4.1": Model("openai", (("gpt-4.1", 0.7), ("gpt-4.1-2025-04-14", 0.3)), "gpt-4.1-2025-04-14",
                     "openai", 1_047_576, 32_768, 12),
    "o3": Model("openai", (("o3", 0.8), ("o3-2025-04-16", 0.2)), "o3-2025-04-16", "openai", 200_000, 100_000, 15,
                reasoning=(0.5, 0.9), reasoning_prob=1.0, output_scale=3.0),
    "o4-mini": Model("openai", (("o4-mini", 0.8), ("o4-mini-2025-04-16", 0.2)), "o4-mini-2025-04-16", "openai",
                     200_000, 100_000, 8, reasoning=(0.4, 0.85), reasoning_prob=1.0, output_scale=2.5),
    "claude-sonnet-4": Model("anthropic", (("claude-sonnet-4-20250514", 0.8), ("claude-sonnet-4-0", 0.2)),
                             "claude-sonnet-4-20250514", "anthropic", 200_000, 64_000, 14),
    "claude-opus-4": Model("anthropic", (("claude-opus-4-20250514", 0.8), ("claude-opus-4-0", 0.2)),
                           "claude-opus-4-20250514", "anthropic", 200_000, 32_000, 25),
    "claude-3-5-haiku": Model("anthropic", (("claude-3-5-haiku-latest", 0.5), ("claude-3-5-haiku-20241022", 0.5)),
                              "claude-3-5-haiku-20241022", "anthropic", 200_000, 8_192, 7),
    "gemini-2.5-pro": Model("gcp.gemini", (("gemini-2.5-pro", 1.0),), "gemini-2.5-pro", "gemini", 1_048_576, 65_536, 12,
                            reasoning=(0.3, 0.75), reasoning_prob=1.0, output_scale=2.0),
    "gemini-2.5-flash": Model("gcp.gemini", (("gemini-2.5-flash", 1.0),), "gemini-2.5-flash", "gemini", 1_048_576,
                              65_536, 5, reasoning=(0.1, 0.5), reasoning_prob=0.5, output_scale=1.3),
    # Planted: a self-hosted model (vLLM) that no price library knows.
    "acme-internal-llm-v1": Model("vllm", (("acme-internal-llm-v1", 1.0),), "acme-internal-llm-v1", "none",
                                  32_768, 4_096, 10),
}
UNPRICED_MODEL = "acme-internal-llm-v1"

ERROR_TYPES = {  # as each provider's SDK names them; the first is a rate limit (no tokens billed)
    "openai": ("RateLimitError", "APITimeoutError", "InternalServerError"),
    "anthropic": ("rate_limit_error", "overloaded_error", "api_error"),
    "gcp.gemini": ("RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL"),
    "vllm": ("rate_limit", "timeout", "server_error"),
}


@dataclass(frozen=True)
class App:
    name: str
    outcome_type: str
    link: str  # how its outcomes name their session: session_id, trace_id or user_time
    sessions_per_day: float  # per user on a weekday, before personal and planted factors
    calls: tuple[str, float, float, int]  # ("geom", mean extra calls, -, max) | ("lognorm", median, sigma, max)
    gap_s: tuple[float, float, float, float]  # lognormal median, sigma, min, max seconds between calls
    input: tuple[float, float, float]  # context lognormal median, sigma, growth per call (history piles up)
    output: tuple[float, float]  # lognormal median, sigma
    tool_calls: float  # mean tool calls per response
    outcome_prob: float  # share of sessions that produce an outcome event (the rest are idle)
    success: float  # share of outcomes that succeed
    outcome_delay_s: tuple[float, float, float, float]  # lognormal median, sigma, min, max after the last call
    features: tuple[str, ...]
    cancel_prob: float
    value_usd: tuple[float, float] | None = None  # lognormal median, sigma of a successful outcome's value
    max_context: int = 200_000  # the app trims or compacts its history beyond this


    @property
    def explicit_session(self) -> bool:
        return self.link != "user_time"


APPS: dict[str, App] = {a.name: a for a in (
    App("support-bot", "ticket_resolved", "session_id", 12, ("geom", 3.0, 0, 25), (45, 0.8, 5, 900),
        (1800, 0.5, 0.35), (220, 0.6), 0.3, 0.85, 0.75, (600, 0.8, 60, 3600),
        ("triage", "kb_search", "draft_reply", "summarize_ticket"), 0.01, max_context=64_000),
    App("coding-agent", "pr_merged", "trace_id", 5, ("lognorm", 10, 0.7, 80), (6, 0.9, 1, 240),
        (9000, 0.6, 0.25), (600, 0.9), 1.6, 0.6, 0.7, (10_800, 1.0, 600, 108_000),
        ("plan", "edit", "run_tests", "review"), 0.005, max_context=200_000),
    # No session id: the pipeline groups these calls by (org, user, app) and the inactivity gap,
    # and their outcomes are matched by user, app and time alone.
    App("sales-assistant", "lead_qualified", "user_time", 4, ("geom", 1.5, 0, 8), (120, 1.0, 10, 1200),
        (1400, 0.5, 0.4), (350, 0.5), 0.2, 0.55, 0.4, (240, 0.8, 30, 900),
        ("research", "email_draft", "crm_notes"), 0.01, value_usd=(6000, 1.0), max_context=32_000),
    App("doc-summarizer", "task_completed", "session_id", 8, ("geom", 0.5, 0, 3), (10, 0.6, 2, 120),
        (12_000, 0.9, 0.0), (500, 0.5), 0.0, 0.95, 0.92, (10, 0.6, 2, 60),
        ("summarize", "extract"), 0.005, max_context=400_000),
)}

ORGS: dict[str, dict[str, tuple[str, ...]]] = {  # org -> team -> apps its users run
    "acme": {"support": ("support-bot",), "platform": ("coding-agent",), "sales": ("sales-assistant",),
             "ops": ("doc-summarizer",)},
    "globex": {"support-us": ("support-bot",), "support-emea": ("support-bot",),
               "engineering": ("coding-agent", "doc-summarizer"), "sales": ("sales-assistant",)},
    "initech": {"support": ("support-bot",), "dev": ("coding-agent",), "sales": ("sales-assistant",),
                "legal": ("doc-summarizer",)},
}

# Which model a session uses: (org, app) or the more specific (org, app, team).
MODEL_MIX: dict[tuple[str, ...], dict[str, float]] = {
    ("acme", "support-bot"): {"claude-3-5-haiku": 0.8, "claude-sonnet-4": 0.2},
    ("acme", "coding-agent"): {"claude-sonnet-4": 0.7, "o3": 0.3},
    ("acme", "sales-assistant"): {"gpt-4o-mini": 0.6, "gpt-4o": 0.4},
    ("acme", "doc-summarizer"): {"gemini-2.5-flash": 0.77, "gpt-4o-mini": 0.2, UNPRICED_MODEL: 0.03},
    ("globex", "support-bot"): {"gpt-4o-mini": 0.6, "claude-3-5-haiku": 0.4},
    ("globex", "support-bot", "support-emea"): {"claude-opus-4": 1.0},  # planted overkill (team)
    ("globex", "coding-agent"): {"gpt-4.1": 0.5, "o4-mini": 0.3, "claude-sonnet-4": 0.2},
    ("globex", "doc-summarizer"): {"gpt-4.1": 0.5, "gemini-2.5-flash": 0.5},
    ("globex", "sales-assistant"): {"gemini-2.5-flash": 0.6, "gpt-4o": 0.4},
    ("initech", "support-bot"): {"gemini-2.5-flash": 0.8, "gemini-2.5-pro": 0.2},
    ("initech", "coding-agent"): {"claude-opus-4": 0.3, "claude-sonnet-4": 0.4, "gemini-2.5-pro": 0.3},  # overkill
    ("initech", "sales-assistant"): {"gpt-4o": 0.7, "gpt-4o-mini": 0.3},
    ("initech", "doc-summarizer"): {"claude-3-5-haiku": 0.6, "gpt-4.1": 0.4},
}

OVERKILL = (  # (org, app, team or None, expensive model, cheaper models on the same app that succeed as often)
    ("globex", "support-bot", "support-emea", "claude-opus-4", ("gpt-4o-mini", "claude-3-5-haiku")),
    ("initech", "coding-agent", None, "claude-opus-4", ("claude-sonnet-4", "gemini-2.5-pro")),
)
# Planted users: (org, team, app). Tokenmaxxers and honest heavy users share acme/platform on
# purpose: same peers, opposite verdicts.
TOKENMAXXER_SLOTS = (("acme", "platform", "coding-agent"), ("globex", "engineering", "coding-agent"),
                     ("initech", "support", "support-bot"))
HONEST_HEAVY_SLOTS = (("acme", "platform", "coding-agent"), ("acme", "support", "support-bot"))
SPIKE_SLOT = ("globex", "support-us", "support-bot")  # a bot stuck in a loop; no planted user in that team
SPIKE_FACTOR = 10
MIN_SPIKE_CALLS = 40  # small workloads: still a spike you can see

TOKENMAXXER = {"rate": 2.0, "growth_per_week": 1.8, "calls": 1.5, "context": 2.5, "success": 0.6}
HONEST_HEAVY = {"rate": 4.0, "outcome_bonus": 0.25, "success_bonus": 0.15}
BASE_USERS_PER_TEAM = 6
MIN_USERS_PER_TEAM = 6  # acme/platform needs peers besides its two planted users

# Diurnal curve (UTC hour weights) and weekday weights (Monday first).
HOUR_WEIGHTS = (0.2, 0.15, 0.1, 0.1, 0.1, 0.2, 0.4, 0.8, 1.5, 2.2, 2.5, 2.4,
                2.0, 2.3, 2.5, 2.4, 2.1, 1.6, 1.0, 0.7, 0.5, 0.4, 0.3, 0.25)
HOUR_CUM = tuple(accumulate(HOUR_WEIGHTS))
DAY_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 0.15, 0.15)
P_ERROR, P_RETRY, MAX_ATTEMPTS = 0.025, 0.85, 3

MALFORMED_KINDS = ("bad_json", "missing_field", "negative_count", "cache_exceeds_input", "wrong_type", "naive_time")


@dataclass(frozen=True)
class SimulationOptions:
    events: int = DEFAULT_EVENTS
    """Approximate number of valid usage events (retries included; duplicates and malformed lines come on top)."""
    days: int = DEFAULT_DAYS
    seed: int = 42
    start: datetime = DEFAULT_START
    """Midnight UTC: the span is [start, start + days)."""
    malformed_share: float = 0.002
    duplicate_share: float = 0.001
    late_share: float = 0.001

    def __post_init__(self) -> None:
        if self.events < 100:
            raise ValueError("events must be at least 100")
        if not 1 <= self.days <= 366:
            raise ValueError("days must be between 1 and 366")
        if self.start.tzinfo is None or self.start.utcoffset() != timedelta(0) or self.start != _midnight(self.start):
            raise ValueError("start must be midnight UTC, e.g. 2026-11-02T00:00:00Z")
        for name in ("malformed_share", "duplicate_share", "late_share"):
            if not 0 <= getattr(self, name) <= 0.1:
                raise ValueError(f"{name} must be between 0 and 0.1")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


def _midnight(value: datetime) -> datetime:
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


# --- sinks ---------------------------------------------------------------------------------------


class Sink(Protocol):
    """Where the records go. ``record`` is the dict behind ``line`` (None for a malformed line)."""

    def usage(self, line: bytes, record: dict | None) -> None: ...
    def outcome(self, line: bytes, record: dict) -> None: ...
    def describe(self) -> dict[str, Any]: ...
    def finish(self, manifest: dict[str, Any]) -> None: ...


class FileSink:
    """usage.jsonl, outcomes.jsonl and manifest.json in one folder (one JSON object per line)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._usage = open(self.directory / "usage.jsonl", "wb", buffering=1 << 20)
        self._outcomes = open(self.directory / "outcomes.jsonl", "wb", buffering=1 << 20)

    def usage(self, line: bytes, record: dict | None) -> None:
        self._usage.write(line + b"\n")

    def outcome(self, line: bytes, record: dict) -> None:
        self._outcomes.write(line + b"\n")

    def describe(self) -> dict[str, Any]:
        return {"kind": "files", "usage": "usage.jsonl", "outcomes": "outcomes.jsonl", "manifest": "manifest.json",
                "position": "line number in usage.jsonl, from 1"}

    def finish(self, manifest: dict[str, Any]) -> None:
        self.close()
        write_manifest(self.directory / "manifest.json", manifest)

    def close(self) -> None:
        self._usage.close()
        self._outcomes.close()


class KafkaSink:
    """Produce to the events and outcomes topics through the producer SDK (yieldmeter.sdk).

    The records are already in the wire format, so they go through ``send_raw`` (no second
    validation, and the planted malformed lines reach the topic as they are), keyed by the
    SDK's :func:`~yieldmeter.sdk.session_key`; malformed lines are unkeyed.
    """

    def __init__(self, settings: Settings, events_topic: str | None = None, outcomes_topic: str | None = None,
                 manifest_path: Path | None = None):
        from yieldmeter.sdk import UsageProducer

        self.producer = UsageProducer(settings, events_topic=events_topic, outcomes_topic=outcomes_topic)
        self.manifest_path = manifest_path

    def _send(self, topic: str, line: bytes, record: dict | None) -> None:
        from yieldmeter.sdk import session_key

        key = session_key(record["org_id"], record["user_id"], record["app"], record["session_id"]) if record else None
        self.producer.send_raw(topic, key, line)

    def usage(self, line: bytes, record: dict | None) -> None:
        self._send(self.producer.events_topic, line, record)

    def outcome(self, line: bytes, record: dict) -> None:
        self._send(self.producer.outcomes_topic, line, record)

    def describe(self) -> dict[str, Any]:
        return {"kind": "kafka", "events_topic": self.producer.events_topic,
                "outcomes_topic": self.producer.outcomes_topic,
                "producer": "yieldmeter.sdk.UsageProducer.send_raw",
                "key": "yieldmeter.sdk.session_key: {org_id}/{session_id}, else {org_id}/{user_id}/{app}; "
                       "malformed lines unkeyed",
                "position": "order of production on the events topic, from 1"}

    def finish(self, manifest: dict[str, Any]) -> None:
        self.producer.close()  # flushes; raises DeliveryError if the broker did not take everything
        if self.manifest_path is not None:
            write_manifest(self.manifest_path, manifest)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


# --- helpers -------------------------------------------------------------------------------------

_DAY_PREFIX: dict[int, str] = {}


def wire_time(ms: int) -> str:
    """Milliseconds since the epoch -> 2026-11-02T13:00:00.123Z (the contract's wire format)."""
    day, rest = divmod(ms, DAY_MS)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).strftime("%Y-%m-%dT")
    seconds, millis = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{prefix}{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def _epoch_ms(value: datetime) -> int:
    return int(value.timestamp()) * 1000


def _lognorm(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation: Knuth's loop gets slow and exp(-lam) underflows
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _choice(rng: random.Random, weighted: dict[str, float] | tuple[tuple[str, float], ...]) -> str:
    items = list(weighted.items()) if isinstance(weighted, dict) else list(weighted)
    if len(items) == 1:
        return items[0][0]
    r = rng.random() * sum(w for _, w in items)
    for name, weight in items:
        r -= weight
        if r < 0:
            return name
    return items[-1][0]


def _geometric(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    p = 1.0 / (1.0 + mean)  # failures before the first success, mean = (1 - p) / p
    return int(math.log(1.0 - rng.random()) / math.log(1.0 - p))


def _session_shape(rng: random.Random, app: App, maxxing: bool = False) -> list[int]:
    """Offsets in ms of a session's calls from its start."""
    kind, a, b, cap = app.calls
    if maxxing:  # long sessions every time: the habit, not the luck of the draw
        n = round((1 + a if kind == "geom" else a) * TOKENMAXXER["calls"] * _lognorm(rng, 1.0, 0.3))
    else:
        n = 1 + _geometric(rng, a) if kind == "geom" else round(_lognorm(rng, a, b))
    n = max(1, min(cap, n))
    median, sigma, low, high = app.gap_s
    offsets, t = [0], 0
    for _ in range(n - 1):
        t += int(min(high, max(low, _lognorm(rng, median, sigma))) * 1000)
        offsets.append(t)
    return offsets


def _mean_calls(app: App, maxxing: bool) -> float:
    # Calibrated by sampling (fixed seed) rather than derived: the clamps make the algebra messy.
    rng = random.Random(f"calibrate/{app.name}/{maxxing}")
    return statistics.fmean(len(_session_shape(rng, app, maxxing)) for _ in range(4000))


def _model_mix(org: str, app: str, team: str) -> dict[str, float]:
    return MODEL_MIX.get((org, app, team)) or MODEL_MIX[(org, app)]


# --- population ------------------------------------------------------------------------------------


@dataclass
class User:
    org: str
    team: str
    user_id: str
    apps: tuple[str, ...]
    weight: float  # personal activity level (lognormal around 1)
    role: str = "regular"  # regular | tokenmaxxer | honest_heavy
    role_app: str | None = None

    def rate(self, app: str, day: int) -> float:
        """Session-rate multiplier on ``app`` on day ``day`` of the span."""
        if app != self.role_app:
            return self.weight
        if self.role == "tokenmaxxer":  # rising week over week
            return self.weight * TOKENMAXXER["rate"] * TOKENMAXXER["growth_per_week"] ** (day / 7)
        if self.role == "honest_heavy":
            return self.weight * HONEST_HEAVY["rate"]
        return self.weight

    def planted(self, app: str) -> bool:
        return self.role != "regular" and app == self.role_app

    def maxxing(self, app: str) -> bool:
        return self.role == "tokenmaxxer" and app == self.role_app

    def outcome_prob(self, app: App, day: int) -> float:
        if self.role == "tokenmaxxer" and app.name == self.role_app:
            # Outcomes per day stay where a regular user's are while sessions multiply.
            return app.outcome_prob * self.weight / self.rate(app.name, day)
        if self.role == "honest_heavy" and app.name == self.role_app:  # finishes what they start
            return min(0.95, app.outcome_prob + HONEST_HEAVY["outcome_bonus"])
        return app.outcome_prob

    def success(self, app: App) -> float:
        if app.name == self.role_app and self.role == "tokenmaxxer":
            return app.success * TOKENMAXXER["success"]
        if app.name == self.role_app and self.role == "honest_heavy":
            return min(0.97, app.success + HONEST_HEAVY["success_bonus"])
        return app.success


def _population(rng: random.Random, users_per_team: int) -> list[User]:
    users = []
    for org, teams in ORGS.items():
        for team, apps in teams.items():
            for i in range(users_per_team):
                users.append(User(org, team, f"{org}-{team}-{i + 1:02d}", apps, _lognorm(rng, 1.0, 0.3)))
    by_slot = defaultdict(list)
    for user in users:
        by_slot[(user.org, user.team)].append(user)
    for role, slots in (("tokenmaxxer", TOKENMAXXER_SLOTS), ("honest_heavy", HONEST_HEAVY_SLOTS)):
        for org, team, app in slots:
            free = [u for u in by_slot[(org, team)] if u.role == "regular"]
            chosen = rng.choice(free)
            chosen.role, chosen.role_app, chosen.weight = role, app, 1.0  # no personal factor: clear evidence
    return users


# --- the generator ---------------------------------------------------------------------------------


@dataclass(order=True)
class _Spec:
    start: int  # ms since epoch
    seq: int
    user: User = field(compare=False)
    app: App = field(compare=False)
    offsets: list[int] = field(compare=False)
    day: int = field(compare=False)
    spike: bool = field(default=False, compare=False)


CELL = ("sessions", "usage_events", "tokens", "outcomes", "successes")


class _Stats:
    """Ground truth, counted while generating; small: one cell per user, app, week and model."""

    def __init__(self) -> None:
        self.cells: dict[tuple, list[int]] = {}  # (org, team, user, app, week, model key, spike) -> CELL counts
        self.models = Counter()  # (provider, request_model, response_model, tier, model key) -> events
        self.status = [0, 0, 0, 0]  # ok, error, cancelled, retries
        self.unpriced_ids: list[str] = []
        self.spike_sessions: list[str] = []
        self.spike_calls = 0

    def total(self, **where: Any) -> dict[str, int]:
        """Summed CELL counts of the cells matching ``where`` (org, team, user, app, week, model, spike)."""
        names = ("org", "team", "user", "app", "week", "model", "spike")
        index = [(names.index(k), v) for k, v in where.items()]
        sums = [0] * len(CELL)
        for key, cell in self.cells.items():
            if all(key[i] == v if not isinstance(v, (set, tuple)) else key[i] in v for i, v in index):
                for j, n in enumerate(cell):
                    sums[j] += n
        return dict(zip(CELL, sums, strict=True))

    def by(self, *fields: str) -> dict[tuple, dict[str, int]]:
        """Summed CELL counts grouped by ``fields``, in one pass (the peers of 1000s of users)."""
        names = ("org", "team", "user", "app", "week", "model", "spike")
        index = [names.index(f) for f in fields]
        groups: dict[tuple, list[int]] = {}
        for key, cell in self.cells.items():
            sums = groups.setdefault(tuple(key[i] for i in index), [0] * len(CELL))
            for j, n in enumerate(cell):
                sums[j] += n
        return {key: dict(zip(CELL, sums, strict=True)) for key, sums in groups.items()}


class Simulator:
    def __init__(self, options: SimulationOptions):
        self.o = options
        seed = options.seed
        self.rng = random.Random(f"{seed}/events")  # session contents
        self.sched = random.Random(f"{seed}/schedule")  # who starts what when
        self.delivery = random.Random(f"{seed}/delivery")  # late, duplicate, malformed
        self.start_ms = _epoch_ms(options.start)
        self.end_ms = _epoch_ms(options.end)
        self.mean_calls = {(a.name, m): _mean_calls(a, m) for a in APPS.values() for m in (False, True)}
        self._size_population(random.Random(f"{seed}/population"))
        self.stats = _Stats()
        self._seq = 0
        self._quota: dict[tuple[str, str], float] = {}

    # sizing: users scale with volume so per-user rates stay human (sessionless apps need room
    # for 36-minute pauses between sessions); a rate factor then hits the requested volume.
    def _expected_calls(self, users: list[User]) -> float:
        total = 0.0
        retry = 1 + P_ERROR * P_RETRY * 1.05
        for user in users:
            for app_name in user.apps:
                app = APPS[app_name]
                calls = self.mean_calls[(app_name, user.maxxing(app_name))]
                for day in range(self.o.days):
                    total += app.sessions_per_day * self._day_weight(day) * user.rate(app_name, day) * calls
        return total * retry

    def _day_weight(self, day: int) -> float:
        return DAY_WEIGHTS[(self.o.start.weekday() + day) % 7]

    def _size_population(self, rng: random.Random) -> None:
        probe = _population(random.Random(0), BASE_USERS_PER_TEAM)
        per_team = BASE_USERS_PER_TEAM * self.o.events / self._expected_calls(probe)
        self.users_per_team = max(MIN_USERS_PER_TEAM, round(per_team))
        self.users = _population(rng, self.users_per_team)
        # The spike's extra calls count toward the requested volume; they scale with the rate too.
        self._spike_plan()
        normal, hour = self._expected_calls(self.users), self._spike_hour_calls()
        self.rate_factor = self.o.events / (normal + (SPIKE_FACTOR - 1) * hour)
        if (SPIKE_FACTOR - 1) * hour * self.rate_factor < MIN_SPIKE_CALLS:
            self.rate_factor = max(self.o.events - MIN_SPIKE_CALLS, self.o.events / 2) / normal
        self.spike_normal_calls = hour * self.rate_factor
        self.spike_extra_calls = max(MIN_SPIKE_CALLS, round((SPIKE_FACTOR - 1) * self.spike_normal_calls))

    def _spike_plan(self) -> None:
        rng = random.Random(f"{self.o.seed}/spike")
        weekdays = [d for d in range(self.o.days // 2, self.o.days) if self._day_weight(d) == 1.0] or [self.o.days - 1]
        self.spike_day = rng.choice(weekdays)
        self.spike_hour = rng.choice((10, 11, 13, 14, 15))
        org, team, _ = SPIKE_SLOT
        self.spike_user = rng.choice([u for u in self.users if (u.org, u.team, u.role) == (org, team, "regular")])

    def _spike_hour_calls(self) -> float:
        """Calls the spike's team makes on the spike's app in that hour on a normal day, at rate 1."""
        org, team, app_name = SPIKE_SLOT
        app = APPS[app_name]
        hour_share = HOUR_WEIGHTS[self.spike_hour] / HOUR_CUM[-1]
        return sum(app.sessions_per_day * self._day_weight(self.spike_day) * u.rate(app_name, self.spike_day)
                   * hour_share * self.mean_calls[(app_name, u.maxxing(app_name))]
                   for u in self.users if (u.org, u.team) == (org, team))

    def _schedule(self, day: int, last_end: dict) -> list[_Spec]:
        rng, specs = self.sched, []
        day_start = self.start_ms + day * DAY_MS
        day_end = min(day_start + DAY_MS, self.end_ms)
        for user in self.users:
            for app_name in user.apps:
                app = APPS[app_name]
                lam = self.rate_factor * app.sessions_per_day * self._day_weight(day) * user.rate(app_name, day)
                if user.planted(app_name):  # a habit: steady counts, so the planted evidence is clear
                    count = int(lam) + (rng.random() < lam - int(lam))
                else:
                    count = _poisson(rng, lam * _lognorm(rng, math.exp(-0.045), 0.3))  # day-to-day mood, mean 1
                starts = sorted(day_start + self._hour(rng) * HOUR_MS + rng.randrange(HOUR_MS) for _ in range(count))
                key = (user.user_id, app_name)
                for start in starts:
                    offsets = _session_shape(rng, app, user.maxxing(app_name))
                    if not app.explicit_session:  # leave the inactivity gap between implicit sessions
                        start = max(start, last_end.get(key, 0) + SESSION_SEPARATION_S * 1000)
                    # Every session starts inside its day, so sessions come out in start order (the
                    # heap flush relies on it); none runs past the span (60 s: room for retries).
                    if start >= day_end or start + offsets[-1] + 60_000 >= self.end_ms:
                        continue
                    last_end[key] = start + offsets[-1]
                    specs.append(self._spec(start, user, app, offsets, day))
        if day == self.spike_day:
            specs.extend(self._spike_specs(day_start))
        specs.sort()
        return specs

    def _spec(self, start: int, user: User, app: App, offsets: list[int], day: int, spike: bool = False) -> _Spec:
        self._seq += 1
        return _Spec(start, self._seq, user, app, offsets, day, spike)

    @staticmethod
    def _hour(rng: random.Random) -> int:
        return bisect(HOUR_CUM, rng.random() * HOUR_CUM[-1])

    def _spike_specs(self, day_start: int) -> list[_Spec]:
        # A runaway loop: one user's conversations fire normal-sized calls for one hour.
        rng, app = self.sched, APPS[SPIKE_SLOT[2]]
        hour_start = day_start + self.spike_hour * HOUR_MS
        sessions = max(4, round(self.spike_extra_calls / self.mean_calls[(app.name, False)]))  # normal-sized
        sizes = [self.spike_extra_calls // sessions + (i < self.spike_extra_calls % sessions) for i in range(sessions)]
        specs = []
        for size in sizes:
            start = hour_start + rng.randrange(600_000)
            span = HOUR_MS - 60_000 - (start - hour_start)  # last call (and its retries) inside the hour
            offsets = [0] + sorted(rng.randrange(span) for _ in range(size - 1))
            specs.append(self._spec(start, self.spike_user, app, offsets, self.spike_day, spike=True))
        return specs

    # --- one session -> events --------------------------------------------------------------------

    def _session(self, spec: _Spec, push) -> None:
        rng, user, app, stats = self.rng, spec.user, spec.app, self.stats
        rand = rng.random
        mix = _model_mix(user.org, app.name, user.team)
        model_key = _choice(rng, mix)
        model = MODELS[model_key]
        request_model = _choice(rng, model.requests)
        session_id = f"ses_{rng.getrandbits(96):024x}" if app.explicit_session else None
        trace_id = f"{rng.getrandbits(128):032x}" if app.explicit_session else None
        tier = "default"
        # Tiers only where genai-prices has the tier's price (Anthropic's retired models have no batch price).
        if app.name == "doc-summarizer" and model.provider == "openai" and rand() < 0.2:
            tier = "batch"
        elif model.reasoning and model.provider == "openai" and rand() < 0.1:
            tier = "flex"
        uses_cache = model.cache != "none" and (model.cache != "anthropic" or rand() < 0.8)
        ctx_median, ctx_sigma, growth = app.input
        if user.maxxing(app.name):  # always the biggest context the tool allows
            context = _lognorm(rng, ctx_median * TOKENMAXXER["context"], 0.25)
        else:
            context = _lognorm(rng, ctx_median, ctx_sigma)
        out_median, out_sigma = app.output
        max_input = min(model.max_input, app.max_context)
        base = {"org_id": user.org, "team": user.team, "user_id": user.user_id, "app": app.name}
        prev_input, tokens, last_ts, calls, errors, status_counts = 0, 0, spec.start, 0, 0, stats.status
        for i, offset in enumerate(spec.offsets):
            ts = spec.start + offset
            step = i % 12 if spec.spike else i  # a runaway loop restarts its context; a real session piles it up
            want_input = min(max_input, max(40, int(context * (1 + growth * step) * (0.85 + 0.3 * rand()))))
            out = out_median * math.exp(rng.gauss(0, out_sigma)) * model.output_scale
            if rand() < 0.02:
                out *= rng.paretovariate(1.3)  # the tail: long generations
            want_output = min(model.max_output, max(1, int(out)))
            retry_of, attempt = None, 1
            while True:
                event_id = f"{rng.getrandbits(128):032x}"
                r = rand()
                if r < P_ERROR:
                    status = "error"
                    kinds = ERROR_TYPES[model.provider]
                    k = int(rand() * 3)
                    error_type = kinds[k]
                    # a rate limit bills nothing; a timeout or server error after the prompt was read
                    # is recorded with its input by most gateways
                    inp = 0 if k == 0 else want_input
                    cr = cw = outp = reasoning = tools = 0
                    latency = int(rand() * 400) + 50 if k == 0 else 30_000 + int(rand() * 60_000)
                else:
                    status = "cancelled" if r < P_ERROR + app.cancel_prob else "ok"
                    error_type = None
                    inp, outp = want_input, want_output
                    if status == "cancelled":
                        outp = max(1, int(outp * (0.05 + 0.55 * rand())))
                    cr = cw = 0
                    if uses_cache:
                        cr, cw = self._cache(model.cache, i, inp, prev_input, rand)
                    reasoning = 0
                    if model.reasoning and rand() < model.reasoning_prob:
                        low, high = model.reasoning
                        reasoning = int(outp * (low + (high - low) * rand()))
                    tools = 0
                    if app.tool_calls and status == "ok" and i < len(spec.offsets) - 1:
                        tools = _poisson(rng, app.tool_calls)
                    latency = int(250 + 600 * rand() * rand() + outp * model.ms_per_token)
                event = {
                    "schema_version": 1, "event_id": event_id, "occurred_at": wire_time(ts), **base,
                    "feature": app.features[i % len(app.features)],
                    "provider": model.provider, "request_model": request_model,
                    "response_model": model.response if status != "error" else request_model,
                    "operation": model.operation, "input_tokens": inp, "cache_read_tokens": cr,
                    "cache_write_tokens": cw, "output_tokens": outp, "reasoning_tokens": reasoning,
                    "service_tier": tier, "session_id": session_id, "trace_id": trace_id, "latency_ms": latency,
                    "status": status, "error_type": error_type, "retry_of": retry_of, "tool_calls": tools,
                    "attributes": {},
                }
                push(ts, "usage", event)
                calls += 1
                tokens += inp + outp
                if status == "ok":
                    status_counts[0] += 1
                elif status == "error":
                    status_counts[1] += 1
                    errors += 1
                else:
                    status_counts[2] += 1
                if retry_of:
                    status_counts[3] += 1
                if model_key == UNPRICED_MODEL:
                    stats.unpriced_ids.append(event_id)
                last_ts = ts
                if status != "error" or attempt >= MAX_ATTEMPTS or rand() >= P_RETRY:
                    break
                retry_of, attempt = event_id, attempt + 1
                ts += 1000 + int(rand() * 19_000)  # backoff
            if status != "error":
                prev_input = inp
        # --- bookkeeping and the outcome
        stats.models[(model.provider, request_model, model.response, tier, model_key)] += calls - errors
        if errors:  # a failed call has no response model: it reports the one requested
            stats.models[(model.provider, request_model, request_model, tier, model_key)] += errors
        key = (user.org, user.team, user.user_id, app.name, spec.day // 7, model_key, spec.spike)
        cell = stats.cells.get(key)
        if cell is None:
            cell = stats.cells[key] = [0] * len(CELL)
        cell[0] += 1
        cell[1] += calls
        cell[2] += tokens
        if spec.spike:
            stats.spike_sessions.append(session_id)
            stats.spike_calls += calls
            return  # a runaway loop produces nothing
        if not self._happens(user, app, "outcome", user.outcome_prob(app, spec.day)):
            return
        median, sigma, low, high = app.outcome_delay_s
        at = last_ts + int(min(high, max(low, _lognorm(rng, median, sigma))) * 1000)
        if at >= self.end_ms:
            return  # it would happen after the span: within the span the session stays idle
        success = self._happens(user, app, "success", user.success(app))
        value = None
        if app.value_usd and success:
            cents = max(50_000, int(_lognorm(rng, *app.value_usd) * 100))
            value = f"{cents // 100}.{cents % 100:02d}"
        outcome = {
            "schema_version": 1, "outcome_id": f"out_{rng.getrandbits(96):024x}", "occurred_at": wire_time(at),
            **base,
            "session_id": session_id if app.link == "session_id" else None,
            "trace_id": trace_id if app.link in ("session_id", "trace_id") else None,
            "outcome_type": app.outcome_type, "success": success, "value_usd": value, "attributes": {},
        }
        push(at, "outcome", outcome)
        cell[3] += 1
        cell[4] += success

    def _happens(self, user: User, app: App, what: str, probability: float) -> bool:
        if not user.planted(app.name):
            return self.rng.random() < probability
        # Planted users meet their expected rates exactly (error diffusion), not by luck.
        key = (user.user_id, what)
        self._quota[key] = self._quota.get(key, 0.5) + probability
        if self._quota[key] >= 1:
            self._quota[key] -= 1
            return True
        return False

    @staticmethod
    def _cache(style: str, i: int, inp: int, prev_input: int, rand) -> tuple[int, int]:
        """(cache_read, cache_write), both inside input_tokens."""
        if style == "anthropic":  # explicit breakpoints: the first call writes the prefix, later ones read it
            if i == 0 or prev_input == 0:
                return 0, int(inp * (0.5 + 0.3 * rand()))
            read = min(inp, int(prev_input * (0.85 + 0.15 * rand())))
            return read, int((inp - read) * (0.3 + 0.6 * rand()))
        # OpenAI and Gemini cache implicitly, in 128-token blocks past the first 1024 tokens
        if inp < 1024 or (i == 0 and rand() > 0.3) or (style == "gemini" and rand() < 0.5):
            return 0, 0
        prefix = min(inp, prev_input or 1024) * (0.7 + 0.3 * rand())
        return int(prefix) // 128 * 128, 0

    # --- the run ----------------------------------------------------------------------------------

    def events(self) -> Iterator[tuple[int, str, dict]]:
        """(time ms, "usage" | "outcome", record) in time order."""
        heap: list[tuple[int, int, str, dict]] = []
        seq = 0

        def push(ts: int, kind: str, record: dict) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(heap, (ts, seq, kind, record))

        last_end: dict = {}
        for day in range(self.o.days):
            for spec in self._schedule(day, last_end):
                while heap and heap[0][0] < spec.start:  # nothing generated from now on is earlier
                    ts, _, kind, record = heapq.heappop(heap)
                    yield ts, kind, record
                self._session(spec, push)
        while heap:
            ts, _, kind, record = heapq.heappop(heap)
            yield ts, kind, record


class _Delivery:
    """Writes records the way a real pipeline receives them: some late, some twice, some broken."""

    def __init__(self, options: SimulationOptions, rng: random.Random, sink: Sink):
        self.o, self.rng, self.sink = options, rng, sink
        self.delayed: list[tuple[int, int, bytes, dict, dict]] = []  # (release, seq, line, record, what it is)
        self.lines = 0
        self.seq = 0
        self.late: list[dict] = []
        self.duplicates: list[dict] = []
        self.malformed: list[dict] = []
        self.outcomes = 0
        self.late_until = _epoch_ms(options.end) - 7 * HOUR_MS  # a late event still has later ones to follow

    def _write(self, line: bytes, record: dict | None) -> int:
        self.sink.usage(line, record)
        self.lines += 1
        return self.lines

    def _release(self, now: int) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            _, _, line, record, info = heapq.heappop(self.delayed)
            position = self._write(line, record)
            (self.late if info["late"] else self.duplicates).append({**info["record"], "position": position})

    def _delay(self, release: int, line: bytes, record: dict, info: dict) -> None:
        self.seq += 1
        heapq.heappush(self.delayed, (release, self.seq, line, record, info))

    def usage(self, ts: int, record: dict) -> None:
        rand = self.rng.random
        line = to_json(record)
        r = rand()
        if r < self.o.late_share and ts < self.late_until:  # held back 20 min to 6 h: arrives after later events
            delay = 1_200_000 + int(rand() * 20_400_000)
            self._delay(ts + delay, line, record, {"late": True, "record": {
                "event_id": record["event_id"], "occurred_at": record["occurred_at"], "delay_s": delay // 1000}})
        else:
            self._write(line, record)
            if r < self.o.late_share + self.o.duplicate_share:  # re-delivered a few seconds to 10 minutes later
                self._delay(ts + 1000 + int(rand() * 599_000), line, record,
                            {"late": False, "record": {"event_id": record["event_id"]}})
        if rand() < self.o.malformed_share:
            kind = MALFORMED_KINDS[int(rand() * len(MALFORMED_KINDS))]
            bad_id = f"bad_{self.rng.getrandbits(64):016x}"
            position = self._write(_malformed(record, kind, bad_id), None)
            self.malformed.append({"position": position, "kind": kind, "event_id": bad_id})
        # Held-back events go out after the first event at or past their release time, so
        # everything before a late event in the stream is older than its delay.
        self._release(ts)

    def outcome(self, ts: int, record: dict) -> None:
        self.sink.outcome(to_json(record), record)
        self.outcomes += 1

    def finish(self) -> None:
        self._release(2**62)


def _malformed(record: dict, kind: str, event_id: str) -> bytes:
    bad = dict(record, event_id=event_id)
    if kind == "bad_json":
        text = to_json(bad)
        return text[: len(text) // 2]  # a truncated write
    if kind == "missing_field":
        del bad["org_id"]
    elif kind == "negative_count":
        bad["output_tokens"] = -bad["output_tokens"] - 1
    elif kind == "cache_exceeds_input":
        bad["cache_read_tokens"] = bad["input_tokens"] + 100
    elif kind == "wrong_type":
        bad["input_tokens"] = str(bad["input_tokens"])  # "1234": a string is not a count
    elif kind == "naive_time":
        bad["occurred_at"] = bad["occurred_at"].replace("T", " ").removesuffix("Z")
    return to_json(bad)


def simulate(options: SimulationOptions, sink: Sink) -> dict[str, Any]:
    """Generate the workload into ``sink`` and return (and hand the sink) the manifest."""
    sim = Simulator(options)
    delivery = _Delivery(options, sim.delivery, sink)
    for ts, kind, record in sim.events():
        if kind == "usage":
            delivery.usage(ts, record)
        else:
            delivery.outcome(ts, record)
    delivery.finish()
    manifest = _manifest(sim, delivery, sink)
    sink.finish(manifest)
    return manifest


# --- the manifest ------------------------------------------------------------------------------------


def _catalogue_id(provider: str, model: str) -> str:
    from yieldmeter.normalize import normalize_model

    return normalize_model(provider, model)


def _user_evidence(sim: Simulator, user: User, per_user: dict, weekly: dict) -> dict[str, Any]:
    app = user.role_app
    empty = dict.fromkeys(CELL, 0)
    mine = per_user.get((user.user_id, app), empty)
    peers = [per_user.get((u.user_id, app), empty) for u in sim.users
             if u.org == user.org and app in u.apps and u.role == "regular"]
    per_success = [c["tokens"] / c["successes"] for c in peers if c["successes"]]
    return {
        "org_id": user.org, "team": user.team, "user_id": user.user_id, "app": app,
        **{k: mine[k] for k in ("tokens", "usage_events", "sessions", "outcomes", "successes")},
        "tokens_per_success": round(mine["tokens"] / mine["successes"]) if mine["successes"] else None,
        "peers": len(peers),
        "peer_median_tokens": round(statistics.median(c["tokens"] for c in peers)) if peers else None,
        "peer_median_tokens_per_success": round(statistics.median(per_success)) if per_success else None,
        "weekly": [{"week": w, **weekly.get((user.user_id, app, w), empty)} for w in range(_weeks(sim.o))],
    }


def _weeks(options: SimulationOptions) -> int:
    return (options.days + 6) // 7


def _rate(counts: dict[str, int]) -> float | None:
    return round(counts["successes"] / counts["sessions"], 4) if counts["sessions"] else None


def _overkill(sim: Simulator) -> list[dict[str, Any]]:
    planted = []
    for org, app, team, expensive, cheaper in OVERKILL:
        other_teams = tuple(t for t, apps in ORGS[org].items() if app in apps and t != team)
        scope = {"team": team} if team else {}
        # the spike's runaway sessions are not tasks a model succeeded or failed at
        mine = sim.stats.total(org=org, app=app, model=expensive, spike=False, **scope)
        theirs = sim.stats.total(org=org, app=app, model=cheaper, spike=False, **({"team": other_teams} if team else {}))

        def model_ref(key: str) -> dict[str, str]:
            m = MODELS[key]
            return {"provider": m.provider, "catalogue_id": _catalogue_id(m.provider, m.response)}

        planted.append({
            "org_id": org, "app": app, "team": team,
            "scope": f"team {team} runs {expensive} where teams {', '.join(other_teams)} run cheaper models" if team
            else f"{expensive} on a share of {app} sessions beside cheaper models",
            "expensive_model": model_ref(expensive) | {"sessions": mine["sessions"], "successes": mine["successes"],
                                                       "success_rate_per_session": _rate(mine)},
            "cheaper_models": [model_ref(k) for k in cheaper],
            "cheaper_teams": list(other_teams) if team else None,
            "cheaper": {"sessions": theirs["sessions"], "successes": theirs["successes"],
                        "success_rate_per_session": _rate(theirs)},
        })
    return planted


def _manifest(sim: Simulator, delivery: _Delivery, sink: Sink) -> dict[str, Any]:
    o, stats = sim.o, sim.stats
    ok, error, cancelled, retries = stats.status
    valid = ok + error + cancelled
    models = defaultdict(Counter)
    for (provider, request, response, tier, key), n in sorted(stats.models.items()):
        if n:
            models[(provider, request, response, key)][tier] += n
    model_rows = [{"provider": p, "request_model": rq, "response_model": rs, "catalogue_id": _catalogue_id(p, rs),
                   "priced_by_genai_prices": key != UNPRICED_MODEL, "usage_events": sum(tiers.values()),
                   "service_tiers": dict(sorted(tiers.items()))}
                  for (p, rq, rs, key), tiers in models.items()]
    apps = {}
    for name, app in APPS.items():
        c = stats.total(app=name)
        apps[name] = {"outcome_type": app.outcome_type, "outcome_link": app.link, "has_session_id": app.explicit_session,
                      **c, "idle_sessions": c["sessions"] - c["outcomes"],
                      "idle_share": round((c["sessions"] - c["outcomes"]) / c["sessions"], 4) if c["sessions"] else None}
    everything = stats.total()
    per_user, weekly = stats.by("user", "app"), stats.by("user", "app", "week")
    idle = everything["sessions"] - everything["outcomes"]
    spike_start = sim.start_ms + sim.spike_day * DAY_MS + sim.spike_hour * HOUR_MS
    org, team, app = SPIKE_SLOT
    unpriced = MODELS[UNPRICED_MODEL]
    return {
        "schema": MANIFEST_SCHEMA,
        "seed": o.seed,
        "options": {"events": o.events, "days": o.days, "start": wire_time(sim.start_ms),
                    "end": wire_time(sim.end_ms), "malformed_share": o.malformed_share,
                    "duplicate_share": o.duplicate_share, "late_share": o.late_share},
        "output": sink.describe(),
        "population": {"users_per_team": sim.users_per_team, "users": len(sim.users),
                       "orgs": {org_: {team_: list(apps_) for team_, apps_ in teams.items()}
                                for org_, teams in ORGS.items()},
                       "inactivity_gap_s": INACTIVITY_GAP_S,
                       "min_gap_between_implicit_sessions_s": SESSION_SEPARATION_S},
        "totals": {
            "usage_lines": delivery.lines,
            "valid_usage_events": valid,
            "valid_usage_lines": valid + len(delivery.duplicates),
            "duplicates": len(delivery.duplicates),
            "malformed": len(delivery.malformed),
            "late": len(delivery.late),
            "outcomes": delivery.outcomes,
            "successful_outcomes": everything["successes"],
            "sessions": everything["sessions"],
            "idle_sessions": idle,
            "status": {"ok": ok, "error": error, "cancelled": cancelled},
            "retries": retries,
            "tokens": everything["tokens"],
        },
        "per_org": {org_: stats.total(org=org_) for org_ in ORGS},
        "per_app": apps,
        "models": model_rows,
        "planted": {
            "tokenmaxxers": [_user_evidence(sim, u, per_user, weekly)
                             | {"volume_growth_per_week": TOKENMAXXER["growth_per_week"]}
                             for u in sim.users if u.role == "tokenmaxxer"],
            "honest_heavy_users": [_user_evidence(sim, u, per_user, weekly)
                                   for u in sim.users if u.role == "honest_heavy"],
            "model_overkill": _overkill(sim),
            "idle_sessions": {"definition": "a session with no outcome event", "sessions": everything["sessions"],
                              "idle": idle, "share": round(idle / everything["sessions"], 4),
                              "per_app": {k: v["idle_share"] for k, v in apps.items()}},
            "spend_spike": {"org_id": org, "team": team, "app": app, "user_id": sim.spike_user.user_id,
                            "hour_start": wire_time(spike_start), "hour_end": wire_time(spike_start + HOUR_MS),
                            "target_factor": SPIKE_FACTOR,
                            "expected_normal_calls": round(sim.spike_normal_calls, 1),
                            "spike_calls": stats.spike_calls, "session_ids": stats.spike_sessions},
            "unpriced_model": {"provider": unpriced.provider, "model": UNPRICED_MODEL, "org_id": "acme",
                               "app": "doc-summarizer", "usage_events": len(stats.unpriced_ids),
                               "event_ids": stats.unpriced_ids},
            "malformed": {"count": len(delivery.malformed), "share": o.malformed_share,
                          "by_kind": dict(sorted(Counter(m["kind"] for m in delivery.malformed).items())),
                          "lines": delivery.malformed},
            "duplicates": {"count": len(delivery.duplicates), "events": delivery.duplicates},
            "late": {"count": len(delivery.late), "min_delay_s": 1200, "max_delay_s": 21_600,
                     "events": delivery.late},
        },
    }


def manifest_schema() -> dict[str, str]:
    """One line per top-level manifest key, for the docs and the report."""
    return {
        "schema": f"'{MANIFEST_SCHEMA}'",
        "seed, options": "what produced it (events, days, start, end, shares)",
        "output": "where it went (files or Kafka topics) and what 'position' means",
        "population": "users per team, the org/team/app layout, the inactivity gap",
        "totals": "usage lines, valid events, duplicates, malformed, late, outcomes, sessions, status counts, tokens",
        "per_org, per_app": "events, sessions, outcomes, idle shares",
        "models": "every (provider, request_model, response_model) with its catalogue id, tiers and count",
        "planted": "tokenmaxxers, honest_heavy_users, model_overkill, idle_sessions, spend_spike, "
                   "unpriced_model, malformed, duplicates, late",
    }


__all__ = ["APPS", "MODELS", "ORGS", "FileSink", "KafkaSink", "SimulationOptions",
           "manifest_schema", "simulate", "wire_time", "write_manifest"]
