"""Contract throughput: validation and serialisation of UsageEvent and OutcomeEvent, no broker.

    .venv/bin/python benchmarks/bench_contracts.py [EVENTS]      (default 100000)

The producer SDK validates every dict or JSON line and serialises every event before librdkafka
sees it, so these two steps bound what one process can send. Figures are CPU microseconds per
event (process time: steadier than wall time on a shared machine), the best of several rounds,
and the events per CPU-second that validate + serialise alone would allow. The SDK's 100k
events/s target needs all of it under 10 us per event, of which the partition key and
librdkafka take about 2.5 us (benchmarks/bench_producer.py measures the whole path).
"""

from __future__ import annotations

import gc
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_producer import make_events  # noqa: E402  the same event mix as the producer benchmark

from yieldmeter.contracts import OutcomeEvent, UsageEvent, to_json_bytes  # noqa: E402

ROUNDS = 5


def make_outcomes(n: int) -> list[dict]:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    kinds = ["ticket_resolved", "pr_merged", "lead_qualified", "task_completed"]
    return [
        {
            "outcome_id": str(uuid.UUID(int=i)),
            "occurred_at": (t0 + timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "org_id": f"org-{i % 7}", "team": f"team-{i % 23}", "user_id": f"user-{i % 500}", "app": "helpdesk",
            "session_id": f"s-{i % 5000}", "outcome_type": kinds[i % 4], "success": i % 3 != 0,
            "value_usd": f"{i % 100}.{i % 100:02d}" if i % 2 else None, "attributes": {"region": "eu"},
        }  # fmt: skip
        for i in range(n)
    ]


def us_per_item(function: Callable, items: list) -> float:
    """Best of ROUNDS: CPU microseconds per item, keeping no results (as the producer streams)."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for item in items:
            function(item)
        best = min(best, time.process_time() - started)
    return best / len(items) * 1e6


def measure(model: type, dicts: list[dict]) -> None:
    validator, serializer = model.__pydantic_validator__, model.__pydantic_serializer__
    events = [validator.validate_python(d) for d in dicts]
    lines = [to_json_bytes(e) for e in events]
    assert [validator.validate_json(line) for line in lines[:1000]] == events[:1000]  # the figures are of real work
    # as the SDK's usage_event() / record_*() build them: occurred_at a datetime with microseconds
    with_datetimes = [{**d, "occurred_at": e.occurred_at + timedelta(microseconds=123)} for d, e in zip(dicts, events)]
    gc.freeze()  # the inputs are long-lived: keep them out of the collector's scans, as a streaming producer would

    from_dict = us_per_item(validator.validate_python, dicts)
    from_datetime = us_per_item(validator.validate_python, with_datetimes)
    from_json = us_per_item(validator.validate_json, lines)
    serialise = us_per_item(serializer.to_json, events)
    print(f"{model.__name__} ({len(dicts):,} events, average {sum(map(len, lines)) / len(lines):.0f} bytes of JSON):")
    print(f"  validate from dict        {from_dict:5.2f} us/event")
    print(f"  ... occurred_at datetime  {from_datetime:5.2f} us/event")
    print(f"  validate from JSON bytes  {from_json:5.2f} us/event")
    print(f"  serialise to JSON bytes   {serialise:5.2f} us/event")
    for label, validate in (("dict", from_dict), ("JSON", from_json)):
        total = validate + serialise
        print(f"  {label:<4} -> validated wire bytes {total:5.2f} us/event = {1e6 / total:>9,.0f} events/CPU-second")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    usage, outcomes = make_events(n), make_outcomes(n)
    print(f"contract benchmark: best of {ROUNDS} rounds, CPU time of this process")
    measure(UsageEvent, usage)
    measure(OutcomeEvent, outcomes)


if __name__ == "__main__":
    main()
