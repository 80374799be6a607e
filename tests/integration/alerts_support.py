"""Shared by the alert tests: evaluating one rule, rows for the hourly rollup (calls_hourly,
migration 0005) they write to, and a real local Slack receiver."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from yieldmeter.alerts.config import build_config
from yieldmeter.alerts.engine import evaluate
from yieldmeter.alerts.rules import RULES

COLUMNS = ["hour", "org_id", "team", "user_id", "app", "provider", "model", "calls", "input_tokens",
           "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens", "cost_usd", "errors",
           "unpriced_calls"]

DEFAULTS = build_config({}, "test")  # the built-in thresholds
NOW = datetime(2025, 3, 10, 15, 7, tzinfo=timezone.utc)  # evaluates the hour from 14:00 (settle 5 min)
HOUR = datetime(2025, 3, 10, 14, tzinfo=timezone.utc)


def run_rule(client, rule: str, config=DEFAULTS, now=NOW) -> dict:
    """Evaluate one rule, which must run without failing; its findings by incident key."""
    evaluation = evaluate(client, config, now, [RULES[rule]])
    assert evaluation.failed == {} and evaluation.ran == {rule}
    return {f.key: f for f in evaluation.findings}


def hourly(hour: datetime, org="acme", team="support", app="support-bot", cost="1", calls=10, errors=0,
           unpriced=0, provider="openai", model="gpt-4.1", user="u1") -> list:
    return [hour, org, team, user, app, provider, model, calls, calls * 1000, 0, 0, calls * 200, 0,
            Decimal(cost), errors, unpriced]


def insert_hourly(client, rows: list[list]) -> None:
    if rows:
        client.insert("calls_hourly", rows, column_names=COLUMNS)


def history(hours: int, end: datetime = HOUR, **kwargs) -> list[list]:
    """One row per hour for the `hours` hours before `end` (not including it)."""
    return [hourly(end - timedelta(hours=i), **kwargs) for i in range(1, hours + 1)]


# --- a real HTTP receiver standing in for Slack's webhook endpoint ----------------------------


@dataclass
class Received:
    path: str
    body: dict
    at: float  # time.monotonic() when it arrived


@dataclass
class Receiver:
    """http.server on 127.0.0.1:port. `script` is a list of responses served in order, each
    (status, body, headers); once it is used up every request gets 200 "ok", like Slack."""

    port: int
    script: list[tuple[int, str, dict]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T000/B000/secret-token"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                receiver.received.append(Received(self.path, body, time.monotonic()))
                status, text, headers = receiver.script.pop(0) if receiver.script else (200, "ok", {})
                payload = text.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
