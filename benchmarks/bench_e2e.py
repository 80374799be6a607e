"""End-to-end figures: producer -> Kafka -> Flink -> ClickHouse -> dbt, against a one-process baseline.

    .venv/bin/python benchmarks/bench_e2e.py                       # ~1M simulated events
    .venv/bin/python benchmarks/bench_e2e.py --events 200000 --no-overlapped

The workload is the simulator's (yieldmeter.simulate: realistic token counts, sessions,
outcomes, late events, re-deliveries, malformed lines), generated once to a file so that
generating it is not counted as producing it.

Staged (each stage alone, over what the one before left in Kafka or in the warehouse):
  produce   the producer SDK (UsageProducer.send_raw: the lines are already wire format) sends
            the usage events and outcomes
  pipeline  the Flink pipeline job, bounded: validate, deduplicate, price, sessionize, dead letters
  ingest    the warehouse ingest, until caught up: priced calls, sessions, dead letters,
            outcomes and prices into the embedded ClickHouse (chdb)
  dbt       dbt build of the marts (yieldmeter.transform), when the dbt project is there
  end to end = events / (sum of the stages): first produced event to the marts built.
Overlapped (sustained): on fresh topics and a fresh warehouse, the producer and the main job
(`yieldmeter run`'s runner: the continuous Flink job and the ingest) run at the same time; the
clock stops when the warehouse holds every call, outcome and dead letter.
Baseline: benchmarks/baseline_consumer.py, one Python process that validates, prices and
sessionizes the same events from the same topic.

Peak memory is each process's VmHWM, read from /proc while it runs: the producer, the Flink
JVM and the job's Python driver, the ingesting process, dbt, the baseline, the broker.
Every process gets its settings through YIELDMETER_* variables and runs in the bench's
temporary folder, so a developer's .env or warehouse is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import bench_settings, children_by_parent, status_kb  # noqa: E402

from yieldmeter.config import Settings, load_settings  # noqa: E402

HERE = Path(__file__).resolve().parent
FLINK_JVM = "Flink JVM"
FLINK_DRIVER = "Flink job driver (python)"


# --- memory: VmHWM of process trees ------------------------------------------------------------


def _label(pid: int, root_label: str) -> str | None:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if b"PythonGatewayServer" in cmdline or (b"java" in cmdline.split(b"\0")[0] and b"flink" in cmdline):
        return FLINK_JVM
    if re.search(rb"/jobs/\w+\.py", cmdline):
        return FLINK_DRIVER
    return None


class MemoryWatch:
    """Polls the peak RSS (VmHWM) of registered processes and their descendants, by label."""

    def __init__(self, interval_s: float = 0.25):
        self.roots: dict[int, str] = {}
        self.peaks_kb: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.interval_s = interval_s

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def add(self, pid: int, label: str) -> None:
        self.roots[pid] = label
        self.poll()

    def poll(self) -> None:
        tree = children_by_parent()
        for root, label in list(self.roots.items()):
            stack = [root]
            while stack:
                pid = stack.pop()
                stack += tree.get(pid, [])
                name = label if pid == root else _label(pid, label)
                if name:
                    self.peaks_kb[name] = max(self.peaks_kb.get(name, 0), status_kb(pid, "VmHWM:"))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def mb(self, label: str) -> float | None:
        kb = self.peaks_kb.get(label)
        return kb / 1024 if kb else None


# --- processes -----------------------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """The YIELDMETER_* variables that make a child process load exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIELDMETER_")}
    env |= {
        "YIELDMETER_STATE_DIR": str(settings.state_path),
        "YIELDMETER_LIB_DIR": str(settings.lib_path),
        "YIELDMETER_KAFKA_BOOTSTRAP": settings.bootstrap_servers,  # never start a broker of its own
        "YIELDMETER_FLINK_PARALLELISM": str(settings.flink_parallelism),
    }
    return env | {f"YIELDMETER_TOPIC_{key.upper()}": name for key, name in settings.topics.items()}


def spawn(role: str, settings: Settings, *args: str) -> subprocess.Popen:
    """This file in another process, in one of its roles (see main)."""
    return subprocess.Popen([sys.executable, __file__, role, *args], env=settings_env(settings),
                            cwd=settings.state_path, stdout=subprocess.PIPE, text=True)


def result(process: subprocess.Popen, what: str) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{what} failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


# --- roles run in child processes (each prints one JSON line) ----------------------------------------


def role_produce(path: Path) -> dict:
    """Send the workload file with the producer SDK."""
    import resource

    from yieldmeter.sdk import UsageProducer

    settings = load_settings()
    start = time.monotonic()
    records = 0
    with UsageProducer(settings) as producer, open(path, "rb") as lines:
        topics = {b"u": producer.events_topic, b"o": producer.outcomes_topic}
        for line in lines:
            kind, key, value = line.rstrip(b"\n").split(b"\t", 2)
            producer.send_raw(topics[kind], key or None, value)
            records += 1
    seconds = time.monotonic() - start
    return {"records": records, "seconds": seconds, "finished_at": time.time(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def role_ingest() -> dict:
    from yieldmeter.ingest import WarehouseIngest
    from yieldmeter.warehouse import migrate, open_warehouse

    settings = load_settings()
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
        ingest = WarehouseIngest(settings, client)
        try:
            stats = ingest.run(until_caught_up=True)
        finally:
            ingest.close()
    return {"records": stats.records, "seconds": stats.seconds, "inserted": dict(stats.inserted)}


def role_dbt() -> dict:
    from yieldmeter.transform import transform
    from yieldmeter.warehouse import open_warehouse
    from yieldmeter.errors import YieldmeterError

    settings = load_settings()
    start = time.monotonic()
    try:
        run = transform(settings)
    except YieldmeterError as error:
        return {"success": False, "seconds": time.monotonic() - start, "failures": [str(error).splitlines()[:3]]}
    seconds = time.monotonic() - start
    with open_warehouse(settings.warehouse_url) as client:
        marts = client.query("SELECT count(), sum(cost_usd) FROM fct_calls").result_rows[0]
    return {"success": run.success, "seconds": seconds, "dbt_seconds": run.seconds, "nodes": dict(run.counts()),
            "failures": run.failures()[:5], "fct_calls": marts[0], "fct_calls_cost_usd": str(marts[1])}


def role_runner(expect: dict[str, int]) -> dict:
    """The main job, continuous, stopped once the warehouse holds ``expect`` rows per table."""
    from yieldmeter.runner import run

    settings = load_settings()
    stop = threading.Event()
    caught_up: list[float] = []

    def on_update(state) -> None:
        if all(state.ingest.inserted.get(table, 0) >= n for table, n in expect.items()) and not caught_up:
            caught_up.append(time.time())
            stop.set()

    state = run(settings, until_caught_up=False, cycle_s=1.0, on_update=on_update, stop=stop)
    return {"caught_up_at": caught_up[0] if caught_up else None, "records": state.ingest.records,
            "inserted": dict(state.ingest.inserted), "job": state.job}


# --- the benchmark -------------------------------------------------------------------------------


class Ticks(threading.Thread):
    """Live traffic after the workload: an event at the current time every second, all on one
    key (one partition), until stopped. The continuous job's watermark trails the newest event
    time, so without newer events it would never pass the workload's last calls and sessions;
    the other partitions fall idle and the ticks carry it. A tick itself is priced only once
    the watermark passes it, minutes later, so few if any count among the calls awaited."""

    def __init__(self, settings: Settings):
        super().__init__(daemon=True)
        self.settings, self.stopped = settings, threading.Event()

    def run(self) -> None:
        from yieldmeter.contracts import UsageEvent
        from yieldmeter.sdk import UsageProducer

        with UsageProducer(self.settings) as producer:
            while not self.stopped.wait(1):
                producer.send_usage(UsageEvent(
                    event_id=f"tick-{uuid.uuid4().hex}", occurred_at=datetime.now(UTC), org_id="bench-tick",
                    team="tick", user_id="tick", app="tick", provider="openai", request_model="gpt-4o",
                    input_tokens=1, output_tokens=1))  # fmt: skip
                producer.poll(0)


class KeyedLines:
    """A simulate() sink writing ``kind<TAB>key<TAB>json`` lines (the JSON never holds a raw tab)."""

    def __init__(self, path: Path):
        from yieldmeter.sdk import session_key

        self.key = session_key
        self.file = open(path, "wb", buffering=1 << 20)

    def _write(self, kind: bytes, line: bytes, record: dict | None) -> None:
        key = self.key(record["org_id"], record["user_id"], record["app"], record["session_id"]).encode() if record else b""
        self.file.write(kind + b"\t" + key + b"\t" + line + b"\n")

    def usage(self, line: bytes, record: dict | None) -> None:
        self._write(b"u", line, record)

    def outcome(self, line: bytes, record: dict) -> None:
        self._write(b"o", line, record)

    def describe(self) -> dict:
        return {"kind": "keyed lines for the benchmark"}

    def finish(self, manifest: dict) -> None:
        self.file.close()


@dataclass
class Stage:
    name: str
    seconds: float
    records: int
    what: str
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


@dataclass
class Report:
    events: int = 0  # usage lines produced (valid, duplicates and malformed)
    outcomes: int = 0
    stages: list[Stage] = field(default_factory=list)
    memory: dict[str, float | None] = field(default_factory=dict)


def with_topics(settings: Settings, prefix: str) -> Settings:
    run = uuid.uuid4().hex[:6]
    state = settings.state_path / prefix
    state.mkdir(parents=True, exist_ok=True)
    return settings.model_copy(update={"state_dir": state, "clickhouse_url": None} | {
        f"topic_{key}": f"{prefix}.{run}.{key}" for key in settings.topics})


def prepare(settings: Settings) -> None:
    from yieldmeter.prices import build_catalog, publish
    from yieldmeter.topics import ensure_topics

    ensure_topics(settings)
    publish(build_catalog(), settings)


def staged(base: Settings, workload: Path, manifest: dict, with_dbt: bool, baseline: bool) -> tuple[Report, dict | None]:
    from yieldmeter.pipeline_jobs import start_pipeline

    settings = with_topics(base, "staged")
    prepare(settings)
    report = Report(events=manifest["totals"]["usage_lines"], outcomes=manifest["totals"]["outcomes"])
    with MemoryWatch() as memory:
        producer = spawn("produce", settings, str(workload))
        memory.add(producer.pid, "producer (SDK)")
        produced = result(producer, "the producer")
        report.stages.append(Stage("produce", produced["seconds"], produced["records"], "usage events + outcomes sent"))
        print(f"  produce   {produced['records']:>10,} records in {produced['seconds']:7.1f}s", flush=True)

        start = time.monotonic()
        job = start_pipeline(settings, bounded=True)
        memory.add(job.process.pid, FLINK_DRIVER)
        first_output = _wait_job(job, settings)
        seconds = time.monotonic() - start
        note = (f"first priced call after {first_output:.0f}s (JVM start, planning, catalog), then "
                f"{report.events / (seconds - first_output):,.0f} events/s" if first_output else "")
        report.stages.append(Stage("pipeline", seconds, report.events, "usage events validated, priced, sessionized", note))
        print(f"  pipeline  {report.events:>10,} events  in {seconds:7.1f}s  {note}", flush=True)

        ingester = spawn("ingest", settings)
        memory.add(ingester.pid, "warehouse ingest (python + chdb)")
        ingested = result(ingester, "the ingest")
        report.stages.append(Stage("ingest", ingested["seconds"], ingested["records"],
                                   "records of priced, sessions, dlq, outcomes, prices",
                                   ", ".join(f"{t} {n:,}" for t, n in sorted(ingested["inserted"].items()))))
        print(f"  ingest    {ingested['records']:>10,} records in {ingested['seconds']:7.1f}s", flush=True)

        if with_dbt:
            dbt = spawn("dbt", settings)
            memory.add(dbt.pid, "dbt build (python + chdb)")
            built = result(dbt, "dbt")
            if not built["success"]:
                print(f"  dbt       FAILED, left out of the figures: {built['failures']}", flush=True)
            else:
                report.stages.append(Stage("dbt", built["seconds"], built["fct_calls"], "calls in the fct_calls mart",
                                           f"dbt itself {built['dbt_seconds']:.1f}s; {built['nodes']}"))
                print(f"  dbt       {built['fct_calls']:>10,} calls   in {built['seconds']:7.1f}s", flush=True)

        base_result = None
        if baseline:
            consumer = subprocess.Popen(
                [sys.executable, str(HERE / "baseline_consumer.py"), "--bootstrap", settings.bootstrap_servers,
                 "--topic", settings.topic_events, "--prices-topic", settings.topic_prices,
                 "--out", str(settings.state_path / "baseline")],
                env=settings_env(settings), cwd=settings.state_path, stdout=subprocess.PIPE, text=True)
            memory.add(consumer.pid, "baseline consumer")
            base_result = result(consumer, "the baseline")
            print(f"  baseline  {base_result['records']:>10,} events  in {base_result['seconds']:7.1f}s", flush=True)
    report.memory = {label: kb / 1024 for label, kb in memory.peaks_kb.items()}
    return report, base_result


def _wait_job(job, settings: Settings) -> float | None:
    """Wait for the bounded job; return when its first priced call appeared (seconds from start)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    probe = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "bench-probe", "log_level": 0})
    partitions = probe.list_topics(settings.topic_priced, timeout=10).topics[settings.topic_priced].partitions
    start, first = time.monotonic(), None
    try:
        while job.process.poll() is None:
            try:
                if first is None and any(
                        probe.get_watermark_offsets(TopicPartition(settings.topic_priced, p), timeout=5)[1]
                        for p in partitions):
                    first = time.monotonic() - start
            except KafkaException:  # e.g. a leader not elected yet: ask again next time
                pass
            time.sleep(0.5)
    finally:
        probe.close()
    job.wait()  # raises with the log tail if the job failed
    return first


def overlapped(base: Settings, workload: Path, manifest: dict) -> Report:
    settings = with_topics(base, "overlapped")
    prepare(settings)
    totals = manifest["totals"]
    expect = {"calls": totals["valid_usage_events"], "outcomes": totals["outcomes"], "dead_letters": totals["malformed"]}
    report = Report(events=totals["usage_lines"], outcomes=totals["outcomes"])
    with MemoryWatch() as memory:
        start = time.time()
        runner = spawn("runner", settings, json.dumps(expect))
        memory.add(runner.pid, "runner: ingest + hooks (python + chdb)")
        producer = spawn("produce", settings, str(workload))
        memory.add(producer.pid, "producer (SDK)")
        produced = result(producer, "the producer")
        ticks = Ticks(settings)
        ticks.start()
        done = result(runner, "the runner")
        ticks.stopped.set()
    if done["caught_up_at"] is None:
        raise SystemExit(f"the runner stopped before the warehouse caught up: {done}")
    total = done["caught_up_at"] - start
    report.stages.append(Stage("produce", produced["seconds"], produced["records"], "sent while the job ran"))
    report.stages.append(Stage("overlapped", total, report.events, "first event sent -> warehouse holds every call",
                               f"producer done after {produced['finished_at'] - start:.0f}s"))
    report.memory = {label: kb / 1024 for label, kb in memory.peaks_kb.items()}
    print(f"  overlapped {report.events:>9,} events  in {total:7.1f}s", flush=True)
    return report


def dbt_available() -> bool:
    from support import PROJECT_ROOT

    try:
        import yieldmeter.transform  # noqa: F401
    except ImportError:
        return False
    return any((PROJECT_ROOT / "dbt" / "models").rglob("fct_calls.sql"))


def print_report(title: str, report: Report, stages_total: float | None, baseline: dict | None) -> None:
    print(f"\n{title}")
    print(f"  {'stage':<11} {'records':>11} {'seconds':>9} {'records/s':>11}  what")
    for s in report.stages:
        print(f"  {s.name:<11} {s.records:>11,} {s.seconds:>9.1f} {s.per_second:>11,.0f}  {s.what}"
              + (f"  [{s.note}]" if s.note else ""))
    if stages_total is not None:
        e2e = report.events / stages_total
        print(f"  {'END TO END':<11} {report.events:>11,} {stages_total:>9.1f} {e2e:>11,.0f}  usage events, first sent -> "
              f"{'marts built' if any(s.name == 'dbt' for s in report.stages) else 'warehouse caught up'}")
        if baseline:
            print(f"  {'baseline':<11} {baseline['records']:>11,} {baseline['seconds']:>9.1f} "
                  f"{baseline['events_per_s']:>11,.0f}  one Python process from the same topic "
                  f"(validate, dedup, price, sessionize, write JSONL)")
            print(f"  ratio end-to-end / baseline = {e2e / baseline['events_per_s']:.2f}x")
    print("  peak memory (VmHWM):")
    for label, mb in sorted(report.memory.items()):
        print(f"    {label:<42} {mb:>8,.0f} MB")


def bench(args: argparse.Namespace) -> None:
    from yieldmeter.kafka_local import LocalKafka
    from yieldmeter.simulate import SimulationOptions, simulate

    print(f"bench_e2e: {args.events:,} events, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (other work on this machine slows every figure)", flush=True)
    with bench_settings("ym-bench-e2e-") as base:
        if args.parallelism:
            base = base.model_copy(update={"flink_parallelism": args.parallelism})
        workload = base.state_path / "workload.tsv"
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=args.days + 1)
        t = time.monotonic()
        manifest = simulate(SimulationOptions(events=args.events, days=args.days, seed=args.seed, start=start),
                            KeyedLines(workload))
        totals = manifest["totals"]
        print(f"  generated {totals['usage_lines']:,} usage lines ({totals['valid_usage_events']:,} valid, "
              f"{totals['duplicates']:,} re-delivered, {totals['malformed']:,} malformed) and {totals['outcomes']:,} "
              f"outcomes in {time.monotonic() - t:.1f}s (not counted)", flush=True)
        with_dbt = dbt_available() and not args.no_dbt
        report, baseline = staged(base, workload, manifest, with_dbt, not args.no_baseline)
        total = sum(s.seconds for s in report.stages)
        broker = LocalKafka(base).pid() if base.uses_local_kafka else None
        if broker:
            report.memory["Kafka broker (JVM)"] = status_kb(broker, "VmHWM:") / 1024
        if baseline:
            report.memory["baseline consumer"] = max(report.memory.get("baseline consumer") or 0, baseline["peak_rss_mb"])
        print_report(f"STAGED (Flink parallelism {base.flink_parallelism}"
                     + ("" if with_dbt else "; dbt stage skipped: yieldmeter.transform / the marts are not there")
                     + ")", report, total, baseline)
        if not args.no_overlapped:
            sustained = overlapped(base, workload, manifest)
            print_report("OVERLAPPED (producer, continuous job and ingest at once)", sustained,
                         sustained.stages[-1].seconds, baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    produce = sub.add_parser("produce")
    produce.add_argument("path", type=Path)
    sub.add_parser("ingest")
    sub.add_parser("dbt")
    runner = sub.add_parser("runner")
    runner.add_argument("expect", type=json.loads)
    parser.add_argument("--events", type=int, default=1_000_000, help="simulated usage events (default 1,000,000)")
    parser.add_argument("--days", type=int, default=7, help="days the workload spans")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--parallelism", type=int, help="Flink parallelism (default: the setting, 2)")
    parser.add_argument("--no-dbt", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-overlapped", action="store_true")
    args = parser.parse_args()
    if args.role == "produce":
        print(json.dumps(role_produce(args.path)))
    elif args.role == "ingest":
        print(json.dumps(role_ingest()))
    elif args.role == "dbt":
        print(json.dumps(role_dbt()))
    elif args.role == "runner":
        print(json.dumps(role_runner(args.expect)))
    else:
        bench(args)


if __name__ == "__main__":
    main()
