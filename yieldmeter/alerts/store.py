"""The incident log in ClickHouse: `alerts` (one row per notice) and `alert_deliveries`
(one row per delivery attempt), both append-only (migration 0003 explains the grain).

Delivery order, per notice: the notice row is stored first, then Slack is called, then the
attempt is stored. A crash between Slack's "ok" and storing it is the one case that sends
a message twice (Slack webhooks take no idempotency key); nothing can make a notice vanish.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from clickhouse_connect.driver.client import Client

from yieldmeter.alerts.model import Event, Notice, Severity, utc

TABLES = ("alerts", "alert_deliveries")
DONE = ("delivered", "printed")

NOTICE_COLUMNS = [
    "notice_id", "incident_id", "incident_key", "event", "rule", "severity", "title", "summary", "entity",
    "value", "baseline", "threshold", "unit", "observed_at", "opened_at", "evaluated_at", "query", "details", "route",
]
DELIVERY_COLUMNS = [
    "notice_id", "incident_key", "attempt", "route", "status", "http_status", "retries", "error",
    "attempted_at", "next_retry_at",
]
_SCALE = Decimal("1e-12")  # Decimal(38, 12)


@dataclass(frozen=True)
class Pending:
    notice: Notice
    attempts: int  # attempts so far


def _notice(row: tuple) -> Notice:
    values = dict(zip(NOTICE_COLUMNS, row))
    for name in ("observed_at", "opened_at", "evaluated_at"):
        values[name] = utc(values[name])
    return Notice(
        **values
        | {
            "notice_id": str(values["notice_id"]),
            "incident_id": str(values["incident_id"]),
            "event": Event(values["event"]),
            "severity": Severity(values["severity"]),
            "entity": dict(values["entity"]),
            "details": dict(values["details"]),
        }
    )


class IncidentStore:
    def __init__(self, client: Client):
        self.client = client

    def missing_tables(self) -> list[str]:
        present = {
            row[0]
            for row in self.client.query(
                "SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}",
                parameters={"names": list(TABLES)},
            ).result_rows
        }
        return [name for name in TABLES if name not in present]

    def open_incidents(self) -> dict[str, Notice]:
        """incident_key -> its latest notice, for incidents whose latest notice is not 'resolved'."""
        rows = self.client.query(
            f"SELECT {', '.join(NOTICE_COLUMNS)} FROM ("
            f"  SELECT {', '.join(NOTICE_COLUMNS)}, created_at FROM alerts"
            "   ORDER BY evaluated_at DESC, created_at DESC LIMIT 1 BY incident_key"
            ") WHERE event != 'resolved'"
        ).result_rows
        return {notice.incident_key: notice for notice in map(_notice, rows)}

    def add_notices(self, notices: list[Notice]) -> None:
        if not notices:
            return
        rows = []
        for n in notices:
            row = [getattr(n, name) for name in NOTICE_COLUMNS]
            row[NOTICE_COLUMNS.index("notice_id")] = uuid.UUID(n.notice_id)
            row[NOTICE_COLUMNS.index("incident_id")] = uuid.UUID(n.incident_id)
            for name in ("value", "baseline", "threshold"):
                row[NOTICE_COLUMNS.index(name)] = getattr(n, name).quantize(_SCALE)
            row[NOTICE_COLUMNS.index("event")] = n.event.value
            row[NOTICE_COLUMNS.index("severity")] = n.severity.value
            rows.append(row)
        self.client.insert("alerts", rows, column_names=NOTICE_COLUMNS)

    def pending(self, now: datetime) -> list[Pending]:
        """Notices not yet delivered (nor printed) whose next retry is due, oldest first."""
        rows = self.client.query(
            f"SELECT {', '.join('a.' + c for c in NOTICE_COLUMNS)}, d.attempts FROM alerts AS a "
            "LEFT JOIN ("
            "  SELECT notice_id, count() AS attempts, max(status IN {done:Array(String)}) AS done,"
            "         max(next_retry_at) AS next_retry_at"
            "  FROM alert_deliveries GROUP BY notice_id"
            ") AS d ON a.notice_id = d.notice_id "
            # no attempt yet: the join's defaults (0, 0, 1970) make the notice due now
            "WHERE d.done = 0 AND d.next_retry_at <= {now:DateTime64(3, 'UTC')} "
            "ORDER BY a.evaluated_at, a.created_at",
            parameters={"done": list(DONE), "now": now},
        ).result_rows
        return [Pending(_notice(row[:-1]), int(row[-1])) for row in rows]

    def add_attempt(
        self,
        notice: Notice,
        attempt: int,
        route: str,
        status: str,
        attempted_at: datetime,
        next_retry_at: datetime,
        http_status: int = 0,
        retries: int = 0,
        error: str = "",
    ) -> None:
        self.client.insert(
            "alert_deliveries",
            [[uuid.UUID(notice.notice_id), notice.incident_key, attempt, route, status, http_status,
              min(retries, 255), error[:2000], attempted_at, next_retry_at]],
            column_names=DELIVERY_COLUMNS,
        )
