"""The yardstick: one Python process doing the pipeline's work the straightforward way.

    .venv/bin/python benchmarks/baseline_consumer.py --bootstrap 127.0.0.1:9092 \
        --topic usage.events --prices-topic usage.prices [--out DIR]

It reads the events topic from the beginning to the end offsets it finds at start
(confluent-kafka), validates each record with the contract (yieldmeter.contracts.parse_usage),
drops re-deliveries by event_id, prices each call with the catalog read from the prices topic
(PriceRecord.cost_usd, exact Decimal; the provider and model through normalize_provider and
normalize_model; daily windows; the default tier when the call's tier has no price; the org's
discount), sessionizes per session key (the
session id, else org/user/app) with a 30-minute inactivity gap, and writes priced calls,
closed sessions and rejects as JSON lines to --out. It prints one JSON line: counts, the cost
total, seconds, events/s and peak RSS.

No checkpoints, no exactly-once, no parallelism, and the seen-id set grows with the input:
it is what a team would write first, and what the pipeline is measured against.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from bisect import bisect_right
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from yieldmeter.check import end_offsets
from yieldmeter.config import Settings
from yieldmeter.contracts import ContractError, PriceRecord, UsageEvent, explain, parse_usage
from yieldmeter.normalize import normalize_model, normalize_provider
from yieldmeter.prices import discount_for, read_topic
from yieldmeter.sdk import session_key

GAP = timedelta(minutes=30)
OUT_OF_ORDERNESS = timedelta(minutes=5)  # as the Flink job: sessions close this far behind the newest call
SWEEP_EVERY = 10_000  # records between closing the sessions the newest call time has passed


class Pricer:
    """Prices by (provider, model, tier), each history sorted by effective_from."""

    def __init__(self, prices: list[PriceRecord], discounts: list) -> None:
        history: dict[tuple[str, str, str], list[PriceRecord]] = defaultdict(list)
        for price in prices:
            history[(price.provider, price.model, price.service_tier)].append(price)
        # oldest first; a daily window after the all-day price of the same effective_from
        self.history = {key: sorted(v, key=lambda p: (p.effective_from, p.time_of_day_start is not None))
                        for key, v in history.items()}
        self.starts = {key: [p.effective_from for p in v] for key, v in self.history.items()}
        self.discounts = discounts

    def in_force(self, key: tuple[str, str, str], at: datetime) -> PriceRecord | None:
        starts = self.starts.get(key)
        if not starts:
            return None
        history = self.history[key]
        for i in range(bisect_right(starts, at) - 1, -1, -1):  # newest first: the first that applies wins
            if history[i].applies_at(at):
                return history[i]
        return None

    def price(self, event: UsageEvent) -> tuple[str, PriceRecord | None, Decimal | None]:
        provider = _provider(event.provider)
        model = _model(provider, event.response_model or event.request_model)
        price = (self.in_force((provider, model, event.service_tier), event.occurred_at)
                 or self.in_force((provider, model, "default"), event.occurred_at))
        if price is None:
            return model, None, None
        cost = price.cost_usd(event)
        if self.discounts and (discount := discount_for(self.discounts, event.org_id, provider, event.occurred_at)):
            cost = discount.apply(cost)
        return model, price, cost


@lru_cache(maxsize=4096)
def _provider(provider: str) -> str:
    return normalize_provider(provider)


@lru_cache(maxsize=4096)
def _model(provider: str, model: str) -> str:
    return normalize_model(provider, model)


class Sessions:
    """Open sessions per key; a session closes once the newest call time is a gap past its end."""

    def __init__(self, out) -> None:
        self.open: dict[str, list] = {}  # key -> [start, end, calls, cost]
        self.out = out
        self.closed = 0
        self.corrections = 0
        self.newest: datetime | None = None

    def add(self, key: str, at: datetime, cost: Decimal) -> None:
        if self.newest is None or at > self.newest:
            self.newest = at
        session = self.open.get(key)
        if session is None or at > session[1] + GAP:
            if session is not None:
                self._close(key, session)
            self.open[key] = [at, at, 1, cost]
        elif at >= session[0] - GAP:
            session[0], session[1] = min(session[0], at), max(session[1], at)
            session[2] += 1
            session[3] += cost
        else:  # older than the open session: its own session closed already (a late call)
            self.corrections += 1
            self._write(key, [at, at, 1, cost], correction=True)

    def sweep(self) -> None:
        if self.newest is None:
            return
        watermark = self.newest - OUT_OF_ORDERNESS
        for key in [k for k, s in self.open.items() if s[1] + GAP < watermark]:
            self._close(key, self.open.pop(key))

    def close_all(self) -> None:
        for key, session in self.open.items():
            self._close(key, session)
        self.open.clear()

    def _close(self, key: str, session: list) -> None:
        self.closed += 1
        self._write(key, session, correction=False)

    def _write(self, key: str, session: list, correction: bool) -> None:
        start, end, calls, cost = session
        self.out.write(json.dumps({"session_key": key, "started_at": start.isoformat(), "ended_at": end.isoformat(),
                                   "calls": calls, "cost_usd": str(cost), "is_correction": correction}) + "\n")


def consume(bootstrap: str, topic: str, prices_topic: str, out_dir: Path) -> dict:
    started = time.monotonic()
    contents = read_topic(Settings(_env_file=None, kafka_bootstrap=bootstrap, topic_prices=prices_topic))
    pricer = Pricer(list(contents.catalog.prices.values()), list(contents.catalog.discounts.values()))
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "yieldmeter-baseline", "enable.auto.commit": False,
        "isolation.level": "read_committed", "fetch.max.bytes": 64 * 1024 * 1024, "log_level": 3,
    })  # fmt: skip
    ends = end_offsets(consumer, topic)
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    seen: set[str] = set()
    counts = dict(records=0, valid=0, rejected=0, duplicates=0, unpriced=0)
    total = Decimal(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "calls.jsonl", "wb", buffering=1 << 20) as calls, \
         open(out_dir / "sessions.jsonl", "w", buffering=1 << 20) as sessions_out, \
         open(out_dir / "rejects.jsonl", "w", buffering=1 << 20) as rejects:  # fmt: skip
        sessions = Sessions(sessions_out)
        first = None
        remaining = dict(ends)
        while remaining:
            for message in consumer.consume(10_000, 1.0):
                if message.error():
                    continue
                first = first or time.monotonic()
                counts["records"] += 1
                value = message.value() or b""
                try:
                    event = parse_usage(value)
                except ContractError as error:
                    counts["rejected"] += 1
                    rejects.write(json.dumps({"partition": message.partition(), "offset": message.offset(),
                                              "reason": explain(error).replace("\n", "; "),
                                              "payload": value.decode("utf-8", "replace")}) + "\n")
                    continue
                if event.event_id in seen:
                    counts["duplicates"] += 1
                    continue
                seen.add(event.event_id)
                counts["valid"] += 1
                model, price, cost = pricer.price(event)
                if price is None:
                    counts["unpriced"] += 1
                    cost = Decimal(0)
                total += cost
                key = session_key(event.org_id, event.user_id, event.app, event.session_id)
                sessions.add(key, event.occurred_at, cost)
                calls.write(value.rstrip()[:-1] + b',"model":%s,"price_id":%s,"cost_usd":"%s","session_key":%s}\n' % (
                    json.dumps(model).encode(), json.dumps(price.price_id if price else None).encode(),
                    str(cost).encode(), json.dumps(key).encode()))
                if counts["records"] % SWEEP_EVERY == 0:
                    sessions.sweep()
            for tp in consumer.position([TopicPartition(topic, p) for p in list(remaining)]):
                if tp.offset >= remaining[tp.partition]:
                    del remaining[tp.partition]
        sessions.close_all()
    consumer.close()
    done = time.monotonic()
    consuming = done - (first or done)
    return counts | {
        "sessions": sessions.closed, "session_corrections": sessions.corrections, "cost_usd": str(total),
        "seconds": round(done - started, 3), "consume_seconds": round(consuming, 3),
        "events_per_s": round(counts["records"] / (done - started), 1) if done > started else 0.0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default="usage.events")
    parser.add_argument("--prices-topic", default="usage.prices")
    parser.add_argument("--out", type=Path, help="where the JSON lines go (default: a temporary folder)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="ym-baseline-"))
    print(json.dumps(consume(args.bootstrap, args.topic, args.prices_topic, out) | {"out": str(out)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
