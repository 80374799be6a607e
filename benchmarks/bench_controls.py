"""Control latency: from a call sent to usage.events to the gateway's cache holding a control that
counts it, at a steady call rate, through the real continuous pipeline (price and controls jobs).

    .venv/bin/python benchmarks/bench_controls.py                        # 2,000 calls/s for 60 s
    .venv/bin/python benchmarks/bench_controls.py --rate 500 --seconds 20 --checkpoint-interval 1s

What is timed, per call: the producer sends call k of team T at t_k; a ControlsCache (what a
gateway runs, yieldmeter/controls.py) is fed by usage.controls; the first control of T's budget
that counts k or more calls arrives at c_k. Latency = c_k - t_k. (A control counts calls, not
which ones: the k-th to arrive at the job stands for the k-th sent; within a team the price job
releases calls about in time order.) Calls sent in the first --warmup seconds are left out: the
JVM compiles the jobs' code then.

Baseline, same run: call k's priced record becoming visible on usage.priced (read_committed),
i.e. the part of the latency before the controls job (the price job's watermark and its
exactly-once commit on each checkpoint). The controls job's own part is the difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import bench_settings  # noqa: E402

from yieldmeter.budgets import Budget, publish as publish_budgets  # noqa: E402
from yieldmeter.contracts import PriceRecord, UsageEvent, to_json_bytes  # noqa: E402
from yieldmeter.controls import ControlsCache, ControlsSettings  # noqa: E402
from yieldmeter.pipeline_jobs import start_pipeline  # noqa: E402
from yieldmeter.sdk import UsageProducer  # noqa: E402
from yieldmeter.topics import ensure_topics  # noqa: E402

TEAMS = 20


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def describe(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"p50 {percentile(values, 0.5):.2f} s, p95 {percentile(values, 0.95):.2f} s, "
            f"p99 {percentile(values, 0.99):.2f} s, max {max(values):.2f} s ({len(values):,} calls)")


def publish_price(settings) -> None:
    """gpt-4o's price as a user override: fixed rates, whatever genai-prices' release says."""
    from confluent_kafka import Producer

    price = PriceRecord(provider="openai", model="gpt-4o", effective_from="1970-01-01T00:00:00Z",
                        input_per_mtok="2.5", output_per_mtok="10", cache_read_per_mtok="1.25", source="user")
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    producer.produce(settings.topic_prices, to_json_bytes(price), key=price.price_id.encode())
    producer.flush(30)


class PricedWatcher(threading.Thread):
    """When each call's priced record became visible (read_committed): the baseline."""

    def __init__(self, settings):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": uuid.uuid4().hex,
                                  "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 50})
        self.consumer.subscribe([settings.topic_priced])
        self.seen: dict[str, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for message in self.consumer.consume(5000, 0.1):
                if message.error() is None:
                    self.seen.setdefault(json.loads(message.value())["event_id"], time.monotonic())
        self.consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2000, help="calls a second (default 2000)")
    parser.add_argument("--seconds", type=int, default=60, help="how long to send (default 60)")
    parser.add_argument("--warmup", type=int, default=15, help="seconds of calls left out at the start (default 15)")
    parser.add_argument("--checkpoint-interval", default="2s",
                        help="YIELDMETER_FLINK_CHECKPOINT_INTERVAL for this run: how often the price job "
                        "commits its output (default 2s, `yieldmeter run`'s default)")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--mini-batch", default="200ms", help="the controls job's mini-batch latency (0ms: off)")
    parser.add_argument("--flush-interval", default="0ms", help="the controls sink's flush interval (0ms: none)")
    parser.add_argument("--flink-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Flink option for every job of the pipeline (repeatable)")
    args = parser.parse_args()

    with bench_settings("ym-bench-controls-") as base:
        run = uuid.uuid4().hex[:6]
        settings = base.model_copy(update={f"topic_{key}": f"bench.{run}.{key}" for key in base.topics}
                                   | {"flink_parallelism": args.parallelism,
                                      "flink_checkpoint_interval": args.checkpoint_interval})
        ensure_topics(settings)
        publish_price(settings)
        teams = [f"team-{i:02d}" for i in range(TEAMS)]
        budgets = [Budget(org_id="acme", team=team, limit_usd=Decimal(10**9)) for team in teams]
        publish_budgets(budgets + [Budget(org_id="acme", limit_usd=Decimal(10**9))], settings)
        arrivals: dict[str, list[tuple[float, int]]] = defaultdict(list)  # team -> (arrival, calls counted)

        def on_update(budget_id: str, control) -> None:
            if control is not None and control.team:
                arrivals[control.team].append((time.monotonic(), control.calls))

        print(f"starting the pipeline (parallelism {args.parallelism}, checkpoints every "
              f"{args.checkpoint_interval}) …", flush=True)
        started = time.monotonic()
        job = start_pipeline(settings, bounded=False, group_id=f"bench-{run}", mini_batch=args.mini_batch,
                             flush_interval=args.flush_interval, flink_conf=args.flink_conf)
        cache = ControlsCache(settings, ControlsSettings(), on_update=on_update)
        watcher = PricedWatcher(settings)
        watcher.start()
        try:
            while len(arrivals) < TEAMS:  # every budget's first control: the controls job is up
                if job.process.poll() is not None:
                    raise SystemExit(job.log_tail())
                time.sleep(0.5)
            print(f"pipeline up in {time.monotonic() - started:.0f} s; sending {args.rate:,} calls/s "
                  f"for {args.seconds} s over {TEAMS} teams …", flush=True)
            sent = send(settings, teams, args.rate, args.seconds)
            total = sum(len(times) for times in sent.values())
            # A stream that goes quiet keeps its newest calls in the price job until later calls
            # move its watermark: a trickle of other calls releases the last measured ones.
            trickle = threading.Event()
            threading.Thread(target=send, args=(settings, ["trickle"], 50, 120, trickle), daemon=True).start()
            deadline = time.monotonic() + 120  # then wait for the last controls
            while time.monotonic() < deadline:
                counted = sum(max((calls for _, calls in arrivals[t]), default=0) for t in teams)
                if counted >= total:
                    break
                if job.process.poll() is not None:
                    raise SystemExit(job.log_tail())
                time.sleep(0.5)
            trickle.set()
        finally:
            watcher.stopped.set()
            cache.close()
            job.stop()

        first = min(t for times in sent.values() for t in times)
        control_latency, priced_latency, missing = [], [], 0
        for team, times in sent.items():
            # the earliest arrival of a control counting >= k calls: suffix minima over the
            # updates sorted by the calls they count
            updates = sorted(arrivals[team], key=lambda a: a[1])
            earliest = [0.0] * len(updates)
            for j in range(len(updates) - 1, -1, -1):
                earliest[j] = min(updates[j][0], earliest[j + 1] if j + 1 < len(updates) else float("inf"))
            position = 0
            for k, sent_at in enumerate(times, start=1):
                while position < len(updates) and updates[position][1] < k:
                    position += 1
                if position == len(updates):
                    missing += 1
                    continue
                if sent_at - first < args.warmup:
                    continue
                control_latency.append(earliest[position] - sent_at)
                priced_at = watcher.seen.get(f"{team}-{k}")
                if priced_at is not None:
                    priced_latency.append(priced_at - sent_at)
        achieved = total / (max(t for times in sent.values() for t in times) - first)
        print(f"\n{total:,} calls at {achieved:,.0f}/s (asked {args.rate:,}/s), checkpoints every "
              f"{args.checkpoint_interval}, parallelism {args.parallelism}, controls mini-batch {args.mini_batch}, "
              f"flush {args.flush_interval}{''.join(f', {c}' for c in args.flink_conf)}; "
              f"{missing} call(s) never counted in a control within 120 s")
        print(f"  call -> control in the gateway's cache: {describe(control_latency)}")
        print(f"  baseline, call -> priced record visible (read_committed): {describe(priced_latency)}")
        if control_latency and priced_latency:
            print(f"  the controls job and the cache add p50 "
                  f"{percentile(control_latency, 0.5) - percentile(priced_latency, 0.5):.2f} s")


def send(settings, teams: list[str], rate: int, seconds: int, stop: threading.Event | None = None
         ) -> dict[str, list[float]]:
    """Calls at ``rate`` a second, round robin over the teams, until ``seconds`` pass or ``stop``
    is set; when each was sent."""
    producer = UsageProducer(settings, config={"linger.ms": 5})
    sent: dict[str, list[float]] = {team: [] for team in teams}
    tick, per_tick = 0.01, max(1, rate // 100)
    start, i = time.monotonic(), 0
    while time.monotonic() - start < seconds and not (stop and stop.is_set()):
        for _ in range(per_tick):
            team = teams[i % len(teams)]
            k = len(sent[team]) + 1
            producer.send_usage(UsageEvent(
                event_id=f"{team}-{k}", occurred_at=datetime.now(UTC), org_id="acme", team=team,
                user_id=f"u{i % 200}", app="bench", provider="openai", request_model="gpt-4o",
                input_tokens=1200, cache_read_tokens=400, output_tokens=300))
            sent[team].append(time.monotonic())
            i += 1
        producer.poll(0)
        next_tick = start + (i // per_tick) * tick
        time.sleep(max(0.0, next_tick - time.monotonic()))
    producer.close(30)
    return sent


if __name__ == "__main__":
    main()
