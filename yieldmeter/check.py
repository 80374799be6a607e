"""`yieldmeter check`: reconcile what the topics hold with what the warehouse stored.

Every record of an ingested topic must be in the warehouse exactly once: in its table, or in
dead_letters if the ingest rejected it. The topic side is read from the beginning to the end
(read_committed, as the ingest reads), so the figures are record counts, not offset spans
(transaction markers take offsets too).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, TopicPartition

from yieldmeter.config import Settings
from yieldmeter.errors import YieldmeterError
from yieldmeter.ingest import DEAD_LETTERS, ROUTES, Route

COST_FIELD = {"calls": "cost_usd"}  # tables whose money total is reconciled too
# Compacted topics of current state: compaction drops superseded records the table already
# holds, so their records cannot be counted one for one.
STATE_TABLES = {"budgets", "controls"}


@dataclass(frozen=True)
class Reconciliation:
    topic: str
    table: str
    in_topic: int
    in_table: int
    in_dead_letters: int
    duplicates_in_table: int
    cost_in_topic: Decimal | None = None
    cost_in_table: Decimal | None = None

    @property
    def missing(self) -> int:
        return self.in_topic - self.in_table - self.in_dead_letters

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicates_in_table == 0 and self.cost_in_topic == self.cost_in_table

    def differences(self) -> list[str]:
        out = []
        if self.missing > 0:
            out.append(f"{self.missing} record(s) of {self.topic} are not in {self.table} nor in dead_letters")
        if self.missing < 0:
            out.append(f"{self.table} + dead_letters hold {-self.missing} more record(s) than {self.topic}")
        if self.duplicates_in_table:
            out.append(f"{self.duplicates_in_table} record(s) of {self.topic} are stored more than once in {self.table}")
        if self.cost_in_topic != self.cost_in_table:
            out.append(f"cost differs: {self.topic} {self.cost_in_topic} USD, {self.table} {self.cost_in_table} USD")
        return out



def end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic`` that holds records."""
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    ends = {}
    for partition in metadata.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high > low:
            ends[partition] = high
    return ends

def read_topic(settings: Settings, topic: str, cost_field: str | None, timeout_s: float = 10) -> tuple[int, Decimal | None]:
    """Count the committed records of a topic (and sum a money field) from beginning to end."""
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers, "group.id": f"yieldmeter-check-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "isolation.level": "read_committed", "log_level": 3,
    })  # fmt: skip
    try:
        ends = end_offsets(consumer, topic)
        consumer.assign([TopicPartition(topic, p, 0) for p in ends] or [TopicPartition(topic, 0, 0)])
        count, cost = 0, Decimal(0) if cost_field else None
        idle_since = time.monotonic()
        while not _reached(consumer, topic, ends) and time.monotonic() - idle_since < timeout_s:
            batch = consumer.consume(10_000, 0.5)
            for message in batch:
                if message.error():
                    continue
                count += 1
                if cost_field:
                    value = json.loads(message.value(), parse_float=Decimal).get(cost_field)
                    cost += Decimal(str(value)) if value is not None else 0
            if batch:
                idle_since = time.monotonic()
        return count, cost
    finally:
        consumer.close()


def _reached(consumer: Consumer, topic: str, ends: dict[int, int]) -> bool:
    """Every partition read to its end (the position moves past transaction markers too)."""
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return all(tp.offset >= ends[tp.partition] for tp in positions)


def reconcile_route(settings: Settings, client: Client, route: Route) -> Reconciliation:
    topic = settings.topics[route.topic_key]
    cost_field = COST_FIELD.get(route.table)
    in_topic, cost_in_topic = read_topic(settings, topic, cost_field)
    select_cost = f", sum({cost_field})" if cost_field else ""
    row = client.query(
        f"SELECT count(), uniqExact(_partition, _offset){select_cost} FROM {route.table} WHERE _topic = {{t:String}}",
        parameters={"t": topic},
    ).result_rows[0]
    letters = 0
    if route.table != DEAD_LETTERS:
        letters = client.query(
            f"SELECT uniqExact(_partition, _offset) FROM {DEAD_LETTERS} WHERE _topic = {{t:String}}", parameters={"t": topic}
        ).result_rows[0][0]
    cost_in_table = Decimal(row[2]) if cost_field else None
    return Reconciliation(topic, route.table, in_topic, row[1], letters, row[0] - row[1], cost_in_topic, cost_in_table)


def reconcile(settings: Settings, client: Client) -> list[Reconciliation]:
    existing = {row[0] for row in client.query("SHOW TABLES").result_rows}
    routes = [route for route in ROUTES if route.table not in STATE_TABLES]
    missing = sorted({t for r in routes for t in r.tables} - existing)
    if missing:
        raise YieldmeterError(f"The warehouse has no {', '.join(missing)} table yet: run `yieldmeter migrate` "
                              "(or `yieldmeter run`) first.")
    return [reconcile_route(settings, client, route) for route in routes]
