"""The gateway side of spend controls: a local copy of usage.controls and the per-call decision.

    cache = ControlsCache(settings)            # starts a background consumer of usage.controls
    decision = cache.decide(org_id="acme", team="support", user_id="u42", app="bot", api_key=None)
    if not decision.allowed:
        return 429, decision.reason            # Retry-After: decision.retry_after_s

Every replica of a gateway runs its own cache; all read the same topic, which the controls job
(jobs/controls.py) keeps current from every priced call, so the replicas agree without talking
to each other. The decision for a call looks at every control whose scope holds the call (an
org's, its team's, the user's, ...) and takes the strictest:

- ``block``: refused until the control's period ends;
- ``throttle``: admitted at most ``throttle_per_minute`` times a minute (per replica), else refused;
- ``warn`` / ``ok``: admitted;
- a control past its ``period_end`` no longer applies (the scope's spend starts again at zero).

When the controls cannot be read (the topic not read to its end yet, or no broker answering
for ``stale_after_s``), ``fail_closed`` decides: refuse every call, or admit it (the default,
so an outage of the broker does not stop a company's LLM traffic). docs/controls.md has the
topic contract for gateways written in other languages.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Callable

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from yieldmeter.budgets import Control, describe_scope, parse_control
from yieldmeter.config import ENV_PREFIX, Settings, load_settings
from yieldmeter.contracts import ContractError

log = logging.getLogger(__name__)

STRICTNESS = {"ok": 0, "warn": 1, "throttle": 2, "block": 3}


class ControlsSettings(BaseSettings):
    """How a gateway applies the controls. Environment: ``YIELDMETER_CONTROLS_`` + the field name."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}CONTROLS_", env_file=".env", extra="ignore", frozen=True)

    fail_closed: bool = Field(
        False, description="When the controls cannot be read: refuse every call (true) or admit it (false)."
    )
    stale_after_s: float = Field(
        15, gt=0, description="No broker answered for this long: the controls count as unavailable."
    )
    wait_s: float = Field(
        10, ge=0, description="At start, wait this long for the controls topic to be read before the first decision."
    )
    withdraw_after_s: float = Field(
        2, ge=0, description="A tombstone withdraws its budget's control only if no record of that budget follows "
        "within this long: the controls job's upsert stream sends one before each update of a control (its join "
        "retracts the old row first), and dropping a block for that instant would admit calls.",
    )


@dataclass(frozen=True)
class Decision:
    """Whether one call may go ahead, and why (the reason a refused caller sees)."""

    allowed: bool
    state: str  # the strictest state among the controls that apply, or "unavailable"
    reason: str
    control: Control | None = None  # the control that decided, if any
    retry_after_s: int | None = None  # for a refusal: when to try again


# What a budget's decision depends on besides its spend: a record that differs in one of these
# (a limit raised, an action changed) is a new decision, whatever its spend.
DEFINITION = ("org_id", "team", "user_id", "app", "api_key", "period", "time_zone", "action", "limit_usd",
              "warn_at_pct", "throttle_per_minute")


def is_older(record: Control, held: Control) -> bool:
    """Whether ``record`` is an earlier state of the budget than the ``held`` one: the same
    definition and an earlier period, or the same period with fewer calls (a period's calls only
    grow). The controls job writes such records: after a crash it resumes from its last checkpoint
    and writes the states since again, and between two states of a budget its LEFT JOIN of budgets
    and spend writes the budget with no spend for an instant (state ok, 0 calls). Applied, either
    would lift a block until the next record."""
    if any(getattr(record, name) != getattr(held, name) for name in DEFINITION):
        return False
    if record.period_start != held.period_start:
        return record.period_start < held.period_start
    return record.calls < held.calls


class ControlsCache:
    """A local, current copy of usage.controls (see the module docstring).

    A record older than the state held for its budget (is_older) is skipped, and a tombstone
    withdraws a control only if no record of the budget follows within withdraw_after_s.
    ``on_update`` is called with each control as it is applied (and with the budget id and None
    when one is withdrawn), in the consumer's thread: gateways log state changes with it.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        options: ControlsSettings | None = None,
        *,
        topic: str | None = None,
        on_update: Callable[[str, Control | None], None] | None = None,
    ):
        from confluent_kafka import Consumer

        self.settings = settings or load_settings()
        self.options = options or ControlsSettings()
        self.topic = topic or self.settings.topic_controls
        self.on_update = on_update
        self._controls: dict[str, dict[str, Control]] = {}  # org_id -> budget_id -> control
        self._withdrawals: dict[str, float] = {}  # budget_id -> monotonic time its tombstone takes effect
        self._lock = threading.Lock()
        self._throttles: dict[str, deque[float]] = {}
        self._loaded = threading.Event()
        self._last_contact = 0.0  # monotonic time the broker last answered
        self._stop = threading.Event()
        self._consumer = Consumer({
            "bootstrap.servers": self.settings.bootstrap_servers,
            "group.id": f"yieldmeter-controls-{uuid.uuid4().hex[:8]}",  # assign() only: never joins the group
            "enable.auto.commit": False, "enable.partition.eof": True, "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100,  # a new control reaches the cache within ~0.1 s of being written
            "log_level": 0,
        })  # fmt: skip
        self._thread = threading.Thread(target=self._run, name="yieldmeter-controls", daemon=True)
        self._thread.start()

    # --- the consumer thread -------------------------------------------------------------------

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

        remaining: set[int] | None = None
        next_contact = 0.0
        while not self._stop.is_set():
            try:
                if remaining is None:  # not assigned yet: find the partitions and where they end
                    info = self._consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
                    self._last_contact = time.monotonic()
                    if info is None or info.error is not None:
                        log.warning("controls topic %s not found on %s; retrying", self.topic,
                                    self.settings.bootstrap_servers)
                        self._stop.wait(1)
                        continue
                    remaining = {p for p in info.partitions if self._has_records(TopicPartition(self.topic, p))}
                    self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in info.partitions])
                    if not remaining:
                        self._loaded.set()
                for message in self._consumer.consume(1000, 0.1):
                    if message.error() is not None:
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            self._last_contact = time.monotonic()
                            remaining.discard(message.partition())
                            if not remaining:
                                self._loaded.set()
                            continue
                        log.warning("reading %s: %s", self.topic, message.error())
                        continue
                    self._last_contact = time.monotonic()
                    self._apply(message.key(), message.value())
                self._withdraw_due()
                if time.monotonic() >= next_contact:  # is a broker still answering? (a quiet topic says nothing)
                    self._consumer.list_topics(self.topic, timeout=min(5, self.options.stale_after_s))
                    self._last_contact = time.monotonic()
                    next_contact = self._last_contact + min(2, self.options.stale_after_s / 3)
            except KafkaException as error:
                log.warning("controls consumer: %s", error)
                self._stop.wait(0.5)
        self._consumer.close()

    def _has_records(self, partition) -> bool:
        low, high = self._consumer.get_watermark_offsets(partition, timeout=5)
        return high > low

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        budget_id = (key or b"").decode("utf-8", "replace")
        control = None
        if value is not None:
            try:
                control = parse_control(value)
            except ContractError as error:  # a newer or foreign record: skipped, said once
                log.warning("skipped a record of %s (key %s): %s", self.topic, budget_id, error)
                return
        with self._lock:
            if control is None:  # withdrawn by _withdraw_due unless a record of the budget follows
                # (while the topic is first read no call is decided: at the end of the batch)
                delay = self.options.withdraw_after_s if self._loaded.is_set() else 0
                self._withdrawals.setdefault(budget_id, time.monotonic() + delay)
                return
            self._withdrawals.pop(budget_id, None)  # a record of the budget, even an older one: it exists
            held = self._controls.get(control.org_id, {}).get(budget_id)
            if held is not None and is_older(control, held):
                return
            self._forget(budget_id)
            self._controls.setdefault(control.org_id, {})[budget_id] = control
        if self.on_update is not None:
            self.on_update(budget_id, control)

    def _forget(self, budget_id: str) -> None:
        """Drop the budget's control, whichever org holds it (call with the lock held)."""
        for by_id in self._controls.values():
            by_id.pop(budget_id, None)

    def _withdraw_due(self) -> None:
        """Withdraw the controls whose tombstone no record has followed for withdraw_after_s."""
        now, withdrawn = time.monotonic(), []
        with self._lock:
            for budget_id, due in list(self._withdrawals.items()):
                if due <= now:
                    del self._withdrawals[budget_id]
                    self._forget(budget_id)
                    withdrawn.append(budget_id)
        if self.on_update is not None:
            for budget_id in withdrawn:
                self.on_update(budget_id, None)

    # --- decisions -----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """The topic has been read to its end, and a broker answered within stale_after_s."""
        return self._loaded.is_set() and time.monotonic() - self._last_contact < self.options.stale_after_s

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait until the topic has been read to its end (at most ``timeout_s``, default wait_s)."""
        return self._loaded.wait(self.options.wait_s if timeout_s is None else timeout_s)

    def controls_for(self, org_id: str, team: str | None = None, user_id: str | None = None, app: str | None = None,
                     api_key: str | None = None, now: datetime | None = None) -> list[Control]:
        """The controls in force whose scope holds a call of this org/team/user/app/key."""
        now = now or datetime.now(UTC)
        with self._lock:
            candidates = list(self._controls.get(org_id, {}).values())
        return [c for c in candidates if c.in_force(now) and c.matches(org_id, team, user_id, app, api_key)]

    def decide(self, org_id: str, team: str | None = None, user_id: str | None = None, app: str | None = None,
               api_key: str | None = None) -> Decision:
        """May a call of this scope go ahead now? (See the module docstring for the rules.) Never
        blocks, so it can run on an event loop; call :meth:`wait_ready` once at start."""
        if not self._loaded.is_set():  # never waits: see wait_ready
            return self._unavailable("the controls topic has not been read yet")
        if not self.available:
            return self._unavailable(f"no Kafka broker answered for {self.options.stale_after_s:.0f}s")
        now = datetime.now(UTC)
        applying = sorted(self.controls_for(org_id, team, user_id, app, api_key, now),
                          key=lambda c: STRICTNESS[c.state], reverse=True)
        for control in applying:
            seconds_left = max(1, int((control.period_end - now).total_seconds()) + 1)
            if control.state == "block":
                return Decision(False, "block", control.reason, control, seconds_left)
            if control.state == "throttle":
                wait = self._take_throttle(control)
                if wait is not None:
                    return Decision(False, "throttle", f"{control.reason} (this minute's calls are used up)",
                                    control, wait)
        if applying:
            top = applying[0]
            return Decision(True, top.state, top.reason, top)
        scope = describe_scope(org_id, team, user_id, app, api_key)
        return Decision(True, "ok", f"no budget applies to {scope}")

    def _take_throttle(self, control: Control) -> int | None:
        """Admit the call within this minute's throttle_per_minute; else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            admitted = self._throttles.setdefault(control.budget_id, deque())
            while admitted and now - admitted[0] >= 60:
                admitted.popleft()
            if len(admitted) < (control.throttle_per_minute or 1):
                admitted.append(now)
                return None
            return max(1, int(60 - (now - admitted[0])) + 1)

    def _unavailable(self, why: str) -> Decision:
        if self.options.fail_closed:
            return Decision(False, "unavailable", f"spend controls unavailable ({why}); refusing calls (fail closed)",
                            retry_after_s=5)
        return Decision(True, "unavailable", f"spend controls unavailable ({why}); admitting calls (fail open)")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
