"""Kafka -> ClickHouse ingest, run inside the process that owns the warehouse.

Why not ClickHouse's Kafka table engine: on a server it is the natural path, but inside the
embedded engine (chdb 4.4, engine 26.9) `CREATE TABLE ... ENGINE = Kafka` fails with
"Shutdown was called" (the engine's background consumers do not run in-process). So one
consumer here does the same job, through clickhouse-connect, the same way on chdb and on a
server.

Delivery order, per batch: persist -> commit offsets -> done.
  1. rows are parsed by ClickHouse itself (JSONEachRow), with the Kafka metadata columns
     (_topic, _partition, _offset, _timestamp) added to every row;
  2. a row ClickHouse rejects is isolated and stored in dead_letters with the reason, so a
     bad record never blocks the stream and is never lost;
  3. only then are the offsets committed.
A crash between 1 and 3 re-delivers the batch. The re-delivered records are recognised by
their (topic, partition, offset) already being in the table and skipped, so queries and the
rollup views attached to the tables see every record exactly once.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import UTC, datetime
from typing import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from clickhouse_connect.driver.client import Client

from yieldmeter.config import Settings
from yieldmeter.errors import YieldmeterError
from pydantic import ValidationError

from yieldmeter.budgets import parse_budget, parse_control
from yieldmeter.contracts import ContractError, explain, parse_outcome, parse_price
from yieldmeter.prices import DISCOUNT_PREFIX, OrgDiscount

INSERT_SETTINGS = {
    "input_format_skip_unknown_fields": 1,  # producers may add fields the table does not keep
    "date_time_input_format": "best_effort",  # ISO-8601 with 'Z'
}
DEAD_LETTERS = "dead_letters"


class IngestError(YieldmeterError):
    """The ingest cannot start; the message says what to do."""


def _outcome(message: Message) -> str:
    parse_outcome(message.value())
    return "outcomes"


def _budget(message: Message) -> str:
    budget = parse_budget(message.value())
    if budget.budget_id.encode() != message.key():
        raise ValueError(f"the key must be the budget's id {budget.budget_id!r} (got {message.key()!r})")
    return "budgets"


def _control(message: Message) -> str:
    parse_control(message.value())
    return "controls"


def _price_or_discount(message: Message) -> str:
    # The prices topic carries org discounts too, told apart by their key (see prices.py).
    if (message.key() or b"").startswith(DISCOUNT_PREFIX.encode()):
        OrgDiscount.model_validate_json(message.value())
        return "org_discounts"
    parse_price(message.value())
    return "prices"


@dataclass(frozen=True)
class Route:
    """Records of one topic go to one table; `classify` validates a record and names its
    table when the topic needs it (a contract error sends the record to dead_letters).

    A compacted topic that holds current state (budgets, controls) sets ``key_column`` (the
    Kafka key is stored in it) and ``tombstones`` (a tombstone is stored as a row with
    is_deleted = 1, so the table forgets the key as the topic does).
    """

    topic_key: str
    table: str
    classify: Callable[[Message], str] | None = None
    key_column: str | None = None
    tombstones: bool = False

    def table_for(self, message: Message) -> str:
        return self.classify(message) if self.classify else self.table

    @property
    def tables(self) -> tuple[str, ...]:
        return ("prices", "org_discounts") if self.classify is _price_or_discount else (self.table,)


# The Flink jobs validated usage.events already (their rejects arrive on usage.dlq);
# outcomes and prices come straight from producers, so they are checked here.
ROUTES: tuple[Route, ...] = (
    Route("priced", "calls"),
    Route("sessions", "sessions"),
    Route("outcomes", "outcomes", _outcome),
    Route("prices", "prices", _price_or_discount),
    Route("dlq", DEAD_LETTERS),
    Route("budgets", "budgets", _budget, key_column="budget_id", tombstones=True),
    Route("controls", "controls", _control),  # a withdrawn control's budget is deleted: join budgets
)


@dataclass
class IngestStats:
    records: int = 0
    inserted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: int = 0
    skipped_redelivered: int = 0
    tombstones: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _with_metadata(message: Message, key_column: str | None = None) -> bytes:
    """The record's JSON object with the Kafka metadata columns appended, without re-parsing it
    (and the Kafka key as ``key_column``, when the route keeps it).

    This runs once per record, so it is plain byte formatting: the timestamp goes in as epoch
    seconds with milliseconds, which ClickHouse reads into DateTime64(3).
    """
    value = message.value().strip()
    if not value.startswith(b"{") or not value.endswith(b"}"):
        raise ValueError("not a JSON object")
    return value[:-1] + (b"," if value != b"{}" else b"") + _metadata(message, key_column) + b"}"


def _metadata(message: Message, key_column: str | None) -> bytes:
    seconds, millis = divmod(message.timestamp()[1], 1000)
    meta = b'"_topic":%s,"_partition":%d,"_offset":%d,"_timestamp":%d.%03d' % (
        _json_string(message.topic()), message.partition(), message.offset(), seconds, millis)
    if key_column:
        key = json.dumps((message.key() or b"").decode("utf-8", "replace")).encode()
        meta = b'"%s":%s,' % (key_column.encode(), key) + meta
    return meta


def _deleted_row(message: Message, key_column: str | None) -> bytes:
    """A tombstone as a row: the key and is_deleted = 1 (ReplacingMergeTree's FINAL drops it)."""
    return b'{"is_deleted":1,' + _metadata(message, key_column) + b"}"


@lru_cache(maxsize=64)
def _json_string(text: str) -> bytes:
    return json.dumps(text).encode()


def dead_letter_row(message: Message, reason: str) -> bytes:
    """A dead_letters row for a record the ingest rejected (same shape as Flink's DLQ records)."""
    payload = message.value() or b""
    return json.dumps({
        "source_topic": message.topic(), "source_partition": message.partition(),
        "source_offset": message.offset(), "rejected_at": _iso(int(time.time() * 1000)),
        "reason": reason[:2000], "payload": payload.decode("utf-8", errors="replace"),
        "_topic": message.topic(), "_partition": message.partition(), "_offset": message.offset(),
        "_timestamp": _iso(message.timestamp()[1]),
    }).encode()  # fmt: skip


class WarehouseIngest:
    """Consumes the pipeline's output topics into their tables. One instance per warehouse."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        *,
        routes: Iterable[Route] = ROUTES,
        group_id: str = "yieldmeter-warehouse",
        batch_size: int | None = None,
        max_wait_s: float = 0.5,
    ):
        self.client = client
        self.bootstrap = settings.bootstrap_servers
        self.routes = {settings.topics[r.topic_key]: r for r in routes}
        self.batch_size = batch_size or settings.ingest_batch_size
        self.max_wait_s = max_wait_s
        self.consumer = Consumer({
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",  # only what the Flink transactions committed
            "fetch.max.bytes": 64 * 1024 * 1024,
            "log_level": 3,
        })  # fmt: skip
        self._assign_all()
        # (table, topic, partition) -> highest offset stored before this run: records at or
        # below it may be re-deliveries of a batch whose offsets were never committed.
        self._stored: dict[tuple[str, str, int], int] = self._stored_offsets()

    def _assign_all(self) -> None:
        """Read every partition of the routed topics from its committed offset.

        Explicit assignment, not group subscription: one process owns a warehouse, and a
        restart after a crash must not wait out the dead member's session timeout.
        (Partitions added to a topic later are picked up at the next start.)
        """
        metadata = self.consumer.list_topics(timeout=10).topics
        missing = [t for t in self.routes if t not in metadata or metadata[t].error is not None]
        if missing:
            raise IngestError(f"Topic(s) {', '.join(missing)} do not exist on {self.bootstrap}: run `yieldmeter topics`.")
        partitions = [TopicPartition(t, p) for t in self.routes for p in metadata[t].partitions]
        committed = _retrying(lambda: self.consumer.committed(partitions, timeout=10))
        self.consumer.assign([
            TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
            for tp in committed
        ])

    def _stored_offsets(self) -> dict[tuple[str, str, int], int]:
        stored = {}
        for table in {t for r in self.routes.values() for t in r.tables} | {DEAD_LETTERS}:
            rows = self.client.query(f"SELECT _topic, _partition, max(_offset) FROM {table} GROUP BY _topic, _partition")
            for topic, partition, offset in rows.result_rows:
                stored[(table, topic, partition)] = offset
        return stored

    # --- one batch ----------------------------------------------------------------------------

    def ingest_batch(self, messages: list[Message], stats: IngestStats) -> None:
        planned: list[tuple[str, Message, bytes]] = []
        for message in messages:
            if message.error():
                continue
            stats.records += 1
            route = self.routes[message.topic()]
            if message.value() is None:  # a tombstone retracts a price (the warehouse keeps history) or a budget
                stats.tombstones += 1
                if route.tombstones:
                    planned.append((route.table, message, _deleted_row(message, route.key_column)))
                continue
            try:
                planned.append((route.table_for(message), message, _with_metadata(message, route.key_column)))
            except ContractError as error:
                planned.append((DEAD_LETTERS, message, dead_letter_row(message, explain(error))))
            except ValidationError as error:
                planned.append((DEAD_LETTERS, message, dead_letter_row(message, explain(error))))
            except ValueError as error:
                planned.append((DEAD_LETTERS, message, dead_letter_row(message, f"{route.table}: {error}")))
        stored = self._already_stored(planned)
        rows: dict[str, list[bytes]] = defaultdict(list)
        for table, message, row in planned:
            if (table, message.topic(), message.partition(), message.offset()) in stored:
                stats.skipped_redelivered += 1
            else:
                rows[table].append(row)
        # Dead letters last: a row ClickHouse rejects from the other tables joins them.
        for table in sorted(rows, key=lambda t: t == DEAD_LETTERS):
            self._insert(table, rows[table], rows, stats)
        self._commit(messages)
        stats.batches += 1

    def _already_stored(self, planned: list[tuple[str, Message, bytes]]) -> set[tuple[str, str, int, int]]:
        """Which planned records are in their table already (only possible at or below the
        offsets stored before this run, so this costs nothing once past them)."""
        suspects: dict[tuple[str, str, int], list[int]] = defaultdict(list)
        for table, message, _ in planned:
            key = (table, message.topic(), message.partition())
            if key in self._stored and message.offset() <= self._stored[key]:
                suspects[key].append(message.offset())
        found = set()
        for (table, topic, partition), offsets in suspects.items():
            rows = self.client.query(
                f"SELECT _offset FROM {table} WHERE _topic = {{t:String}} AND _partition = {{p:Int32}}"
                " AND _offset BETWEEN {lo:Int64} AND {hi:Int64}",
                parameters={"t": topic, "p": partition, "lo": min(offsets), "hi": max(offsets)},
            ).result_rows
            found |= {(table, topic, partition, offset) for (offset,) in rows}
        return found

    def _insert(self, table: str, rows: list[bytes], pending: dict[str, list[bytes]], stats: IngestStats) -> None:
        if not rows:
            return
        try:
            self._raw_insert(table, rows)
            stats.inserted[table] += len(rows)
            return
        except Exception:
            if table == DEAD_LETTERS:
                raise  # the last resort failed: stop before committing anything
        # Isolate the rows ClickHouse rejects; the good ones still land.
        for row in rows:
            try:
                self._raw_insert(table, [row])
                stats.inserted[table] += 1
            except Exception as error:
                stats.rejected += 1
                pending[DEAD_LETTERS].append(_rejected_row(row, table, error))

    def _raw_insert(self, table: str, rows: list[bytes]) -> None:
        self.client.raw_insert(table, insert_block=b"\n".join(rows), fmt="JSONEachRow", settings=INSERT_SETTINGS)

    def _commit(self, messages: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            if not message.error():
                key = (message.topic(), message.partition())
                last[key] = max(last.get(key, -1), message.offset())
        if last:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False
            )

    # --- the loop ------------------------------------------------------------------------------

    def run(self, *, until_caught_up: bool = False, should_stop: Callable[[], bool] = lambda: False,
            idle_timeout_s: float = 10.0) -> IngestStats:
        """Ingest until stopped, or until every partition reached the end offsets seen at start."""
        stats, start = IngestStats(), time.monotonic()
        targets = self.end_offsets() if until_caught_up else {}
        idle_since = time.monotonic()
        while not should_stop():
            messages = self.consumer.consume(self.batch_size, self.max_wait_s)
            if messages:
                self.ingest_batch(messages, stats)
                idle_since = time.monotonic()
            if until_caught_up and (self.caught_up(targets) or time.monotonic() - idle_since > idle_timeout_s):
                break
        stats.seconds = time.monotonic() - start
        return stats

    def end_offsets(self) -> dict[TopicPartition, int]:
        targets = {}
        metadata = self.consumer.list_topics(timeout=10).topics
        for topic in self.routes:
            for partition in metadata[topic].partitions if topic in metadata else ():
                tp = TopicPartition(topic, partition)
                low, high = self.consumer.get_watermark_offsets(tp, timeout=10)
                if high > low:
                    targets[tp] = high
        return targets

    def caught_up(self, targets: dict[TopicPartition, int]) -> bool:
        if not targets:
            return True
        # The position moves past transaction markers too, so it reaches the end offset.
        positions = self.consumer.position(list(targets))
        return all(tp.offset >= targets[TopicPartition(tp.topic, tp.partition)] for tp in positions)

    def lag(self) -> dict[str, int]:
        """Records not yet ingested, per topic: the read position against the end offset."""
        targets = self.end_offsets()
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(list(targets))}
        committed = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.committed(list(targets), timeout=10)}
        lag: dict[str, int] = defaultdict(int)
        for tp, end in targets.items():
            done = max(positions.get((tp.topic, tp.partition), -1), committed.get((tp.topic, tp.partition), -1), 0)
            lag[tp.topic] += max(0, end - done)
        return dict(lag)

    def close(self) -> None:
        self.consumer.close()


_COORDINATOR_NOT_READY = {
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT,
}


def _retrying(call, attempts: int = 20, pause_s: float = 0.5):
    """Retry a Kafka admin-style call while the broker answers with a retriable error
    (e.g. NOT_COORDINATOR while a new consumer group's coordinator loads)."""
    for attempt in range(attempts):
        try:
            return call()
        except KafkaException as error:
            code = error.args[0].code()
            if attempt == attempts - 1 or not (error.args[0].retriable() or code in _COORDINATOR_NOT_READY):
                raise
            time.sleep(pause_s)


def _rejected_row(row: bytes, table: str, error: Exception) -> bytes:
    record = json.loads(row)
    payload = {k: v for k, v in record.items() if not k.startswith("_")}
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return json.dumps({
        "source_topic": record["_topic"], "source_partition": record["_partition"],
        "source_offset": record["_offset"], "rejected_at": _iso(int(time.time() * 1000)),
        "reason": f"{table}: warehouse rejected the row: {reason}"[:2000], "payload": json.dumps(payload),
        "_topic": record["_topic"], "_partition": record["_partition"], "_offset": record["_offset"],
        "_timestamp": record["_timestamp"],
    }).encode()  # fmt: skip
