"""Pipeline throughput: validation + dedup + pricing + sessionization, Kafka to Kafka.

    .venv/bin/python benchmarks/bench_pipeline.py [EVENTS]      (default 1000000)

Uses the brokers in YIELDMETER_KAFKA_BOOTSTRAP, else starts a local KRaft broker (temporary
state folder, free ports). Loads the genai-prices catalog into a prices topic, writes EVENTS
usage events (JSON as producers send it; 0.5% dead letters, 0.5% re-deliveries, four
providers with cached and reasoning tokens, 500 users) to a 4-partition topic, then, in the
same run:
- the baseline: benchmarks/baseline_consumer.py, one Python process doing the same work;
- the pipeline in continuous mode (price job and sessionize job side by side, exactly once,
  checkpoints every 5 s), at parallelism 1 and 2, until every call is priced.
BENCH_JOB_OPTIONS='{"dedup_ttl": "1h"}' passes job options; BENCH_PARALLELISM='2' picks one.

Figures, per parallelism:
- first output: seconds from starting the job to its first priced call (JVM start, planning,
  the catalog read from its topic);
- sustained events/s: the priced topic's growth from 40% to 90% of the calls (the JIT compiler
  has compiled most of Flink's generated code by then), and over the whole run;
- JVM CPU microseconds per event (all threads, both jobs, start-up included), peak resident
  memory (VmHWM), and where the CPU goes (each JVM thread from /proc, grouped by what it does);
- the state that grows with traffic, the deduplication's event ids: bytes per id in the price
  job's checkpoint, and what a day of retention needs at 1k and 10k events/s.
Targets on this 2-core machine: sustained >= 2x the baseline, JVM <= 1.5 GB, first output <= 10 s.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_producer import make_events  # noqa: E402  the same event mix as the producer benchmark
from support import bench_settings, children_by_parent, status_kb  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from yieldmeter.contracts import UsageEvent, to_json_bytes  # noqa: E402
from yieldmeter.prices import build_catalog, publish  # noqa: E402
from yieldmeter.topics import admin_client, create_topics  # noqa: E402
from yieldmeter.pipeline_jobs import start_pipeline  # noqa: E402

PARTITIONS = {"events": 4, "prices": 1, "priced": 4, "sessions": 4, "dlq": 1}


def write_events(settings, topic: str, n: int) -> tuple[int, int]:
    """The benchmark input; returns (dead letters, re-deliveries) written among the n records."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 50,
                         "batch.size": 1_000_000, "compression.type": "lz4"})  # fmt: skip
    bad = dup = 0
    for i, fields in enumerate(make_events(n)):
        if i % 200 == 7:
            value, bad = b'{"event_id": "broken", "input_tokens": -1', bad + 1
        elif i % 200 == 11 and i > 1000:
            value, dup = payload, dup + 1  # the previous call again  # noqa: F821
        else:
            payload = value = to_json_bytes(UsageEvent.model_validate(fields))
        key = (fields["session_id"] or fields["user_id"]).encode()
        while True:
            try:
                producer.produce(topic, value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0
    return bad, dup


def committed_count(settings, topic: str, parts: int) -> int:
    """Records a read_committed consumer sees in ``topic`` (counted, not decoded)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"count-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(parts)])
    count, done = 0, set()
    while len(done) < parts:
        for message in consumer.consume(10_000, 1.0):
            if message.error():
                done.add(message.partition())
            else:
                count += 1
    consumer.close()
    return count


def java_descendant(pid: int) -> int | None:
    """The JVM that runs the mini-cluster (PyFlink's gateway server), found through /proc."""
    children = children_by_parent()
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            if b"PythonGatewayServer" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            pass
        todo += children.get(child, [])
    return None


# Linux names a thread by the first 15 bytes of its name: Flink's task threads start with their
# first operator ("Source: events_src[1] -> ..."), the JVM's own with what they do.
THREAD_GROUPS = (
    ("JIT compiler", ("C1 CompilerThre", "C2 CompilerThre")),
    ("garbage collector", ("GC Thread", "G1 ")),
    ("Kafka clients (fetch, produce)", ("kafka-", "Source Data Fet")),
    ("decode + validate + price (events_src)", ("Source: events_",)),
    ("catalog feed (prices topic)", ("yieldmeter-pric",)),
    ("deduplicate + sink", ("Deduplicate[",)),
    ("read priced (priced_src)", ("Source: priced_",)),
    ("session windows", ("WindowAggregate",)),
    ("sessions sink", ("sessions_sink",)),
)


def thread_group(name: str) -> str:
    for group, prefixes in THREAD_GROUPS:
        if name.startswith(prefixes):
            return group
    return "other (planner, checkpoints, Python gateway)"


class Watch(threading.Thread):
    """Samples the JVM's peak memory and the CPU time of each of its threads while the job runs,
    and how many records the priced topic holds."""

    def __init__(self, driver_pid: int, settings, priced: str):
        super().__init__(daemon=True)
        self.driver_pid = driver_pid
        self.peak_kb = 0
        self.thread_cpu: dict[int, tuple[str, float]] = {}  # thread id -> (name, CPU seconds)
        self.done = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "bench-watch"})
        self.priced = [TopicPartition(priced, p) for p in range(PARTITIONS["priced"])]
        self.written: list[tuple[float, int]] = []  # (time, records in the priced topic)

    @property
    def cpu_s(self) -> float:
        return sum(cpu for _, cpu in self.thread_cpu.values())

    def cpu_by_group(self) -> dict[str, float]:
        groups: dict[str, float] = defaultdict(float)
        for name, cpu in self.thread_cpu.values():
            groups[thread_group(name)] += cpu
        return groups

    def sustained(self) -> float:
        """The price job's output rate once warm: from 40% to 90% of its output."""
        if not self.written or self.written[-1][1] == 0:
            return 0.0
        total = self.written[-1][1]
        start = next(p for p in self.written if p[1] >= 0.4 * total)
        end = next(p for p in self.written if p[1] >= 0.9 * total)
        return (end[1] - start[1]) / (end[0] - start[0]) if end[0] > start[0] else 0.0

    def run(self) -> None:
        java, tick = None, os.sysconf("SC_CLK_TCK")
        while not self.done.is_set():
            java = java or java_descendant(self.driver_pid)
            if java:
                try:
                    self.peak_kb = max(self.peak_kb, status_kb(java, "VmHWM:"))
                    for task in Path(f"/proc/{java}/task").iterdir():
                        head, tail = (task / "stat").read_text().rsplit(")", 1)
                        fields = tail.split()
                        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
                        self.thread_cpu[int(task.name)] = (head.split("(", 1)[1], cpu)
                except (OSError, IndexError, ValueError):  # a thread (or the JVM) ended meanwhile
                    pass
            try:
                count = sum(self.consumer.get_watermark_offsets(tp, timeout=2)[1] for tp in self.priced)
                self.written.append((time.monotonic(), count))
            except Exception:  # KafkaException: a slow broker answer; the next sample will do
                pass
            time.sleep(0.5)
        self.consumer.close()


def baseline(settings, topics: dict) -> dict:
    """benchmarks/baseline_consumer.py on the same input, as a process of its own."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("baseline_consumer.py")), "--bootstrap",
             settings.bootstrap_servers, "--topic", topics["events"], "--prices-topic", topics["prices"], "--out", out],
            capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def checkpoint_bytes(folder: Path) -> int:
    """Size of the newest completed checkpoint under ``folder``: its own files and, for RocksDB's
    incremental checkpoints, the shared files it refers to (the job folder's shared/)."""
    newest = max(folder.glob("**/chk-*/_metadata"), key=lambda m: m.stat().st_mtime, default=None)
    if newest is None:
        return 0
    files = [*newest.parent.rglob("*"), *(newest.parent.parent / "shared").rglob("*")]
    return sum(f.stat().st_size for f in files if f.is_file())


def run(settings, parallelism: int, group: str, topics: dict, expected: int) -> dict:
    """The pipeline, continuous, until ``expected`` calls are priced; its figures."""
    options = json.loads(os.environ.get("BENCH_JOB_OPTIONS", "{}"))
    checkpoints = settings.state_path / "ckpt" / group
    started = time.monotonic()
    job = start_pipeline(settings, bounded=False, group_id=group, parallelism=parallelism,
                         checkpoint_dir=checkpoints.as_uri(), **topics | options)  # fmt: skip
    watch = Watch(job.process.pid, settings, topics["priced_topic"])
    watch.start()
    try:
        while not watch.written or watch.written[-1][1] < expected:
            if job.process.poll() is not None:
                raise SystemExit(f"the job ended early; see {job.log}")
            if time.monotonic() - started > 1800:
                raise SystemExit("the job did not price every call within 30 minutes")
            time.sleep(0.5)
        done = time.monotonic()
        price_checkpoints = checkpoints / "price" / "continuous"
        first_checkpoint = checkpoint_bytes(price_checkpoints)
        time.sleep(12)  # two more checkpoints: the newest one holds every id
        state = max(checkpoint_bytes(price_checkpoints), first_checkpoint)
    finally:
        job.stop()
        watch.done.set()
        watch.join()
    first = next(t for t, count in watch.written if count > 0)
    return {"first_output_s": first - started, "warm": watch.sustained(), "run_s": done - started,
            "over_run": expected / (done - first), "watch": watch, "state_bytes": state}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    levels = [int(p) for p in os.environ.get("BENCH_PARALLELISM", "1,2").split(",")]
    with bench_settings("ym-bench-pipeline-") as settings:
        admin = admin_client(settings)

        def new_topics(run: str) -> dict[str, str]:
            names = {k: f"bench.{k}.{run}.{uuid.uuid4().hex[:6]}" for k in PARTITIONS}
            create_topics(admin, {names[k]: {"partitions": p, "config": {}} for k, p in PARTITIONS.items()})
            return names

        inputs = new_topics("in")
        catalog = build_catalog()
        publish(catalog, settings, inputs["prices"])
        started = time.monotonic()
        bad, dup = write_events(settings, inputs["events"], n)
        calls = n - bad - dup
        print(f"input: {n:,} records ({bad:,} dead letters, {dup:,} re-deliveries), written in "
              f"{time.monotonic() - started:.1f} s; catalog: {len(catalog.prices):,} prices")  # fmt: skip
        base = baseline(settings, inputs)
        print(f"baseline (one Python process): {base['events_per_s']:,.0f} events/s, {base['seconds']:.1f} s, "
              f"peak {base['peak_rss_mb']:,.0f} MB")  # fmt: skip
        print(f"\n{'parallelism':>11} {'first out s':>11} {'warm ev/s':>10} {'x base':>7} {'run ev/s':>9} {'x base':>7} "
              f"{'run s':>6} {'JVM CPU us/ev':>14} {'JVM peak MB':>12}")  # fmt: skip
        results = {}
        for parallelism in levels:
            outputs = new_topics(f"p{parallelism}")
            topics = {f"{k}_topic": inputs[k] if k in ("events", "prices") else outputs[k] for k in PARTITIONS}
            result = run(settings, parallelism, f"bench-{parallelism}-{uuid.uuid4().hex[:6]}", topics, calls)
            dead = committed_count(settings, outputs["dlq"], PARTITIONS["dlq"])
            assert dead == bad, f"dead letters {dead} != {bad}"
            watch = result["watch"]
            print(f"{parallelism:>11} {result['first_output_s']:>11.1f} {result['warm']:>10,.0f} "
                  f"{result['warm'] / base['events_per_s']:>6.2f}x {result['over_run']:>9,.0f} "
                  f"{result['over_run'] / base['events_per_s']:>6.2f}x {result['run_s']:>6.1f} "
                  f"{watch.cpu_s / n * 1e6:>14.1f} {watch.peak_kb / 1024:>12,.0f}")  # fmt: skip
            results[parallelism] = result
        for parallelism, result in results.items():
            groups = result["watch"].cpu_by_group()
            total = sum(groups.values()) or 1
            print(f"\nwhere the time goes, parallelism {parallelism} (CPU of the JVM's threads, start-up included):")
            for group, cpu in sorted(groups.items(), key=lambda kv: -kv[1]):
                print(f"  {cpu / total:6.1%}  {cpu / n * 1e6:6.1f} us/event  {group}")
        state = max(r["state_bytes"] for r in results.values())
        per_id = state / calls
        print(f"\ndeduplication state: {state / 1e6:,.1f} MB in the price job's checkpoint for {calls:,} ids = "
              f"{per_id:,.0f} bytes per id (serialized; on the heap a HashMap entry costs several times that)")
        for rate in (1_000, 10_000):
            print(f"  a day of event ids at {rate:,} events/s: {rate * 86_400 / 1e6:,.1f}M ids = "
                  f"{rate * 86_400 * per_id / 1e9:,.1f} GB serialized")
        print(f"\ntargets: sustained >= 2x the baseline ({2 * base['events_per_s']:,.0f} events/s), JVM <= 1,536 MB, "
              f"first output <= 10 s")


if __name__ == "__main__":
    main()
