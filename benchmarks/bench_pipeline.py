"""Pipeline job throughput: validation + dedup + pricing + sessionization, Kafka to Kafka.

    .venv/bin/python benchmarks/bench_pipeline.py [EVENTS]      (default 500000)

Uses the brokers in YIELDMETER_KAFKA_BOOTSTRAP, else starts a local KRaft broker (temporary
state folder, free ports). Loads the genai-prices catalog into a prices topic, writes EVENTS
usage events (JSON as producers send it; 0.5% dead letters, 0.5% re-deliveries, four
providers with cached and reasoning tokens, 500 users) to a 4-partition topic, then runs the
bounded job at parallelism 1 and 2, exactly once, with checkpoints every 5 s.

Figures, per parallelism:
- events/s: EVENTS / (wall time of the run - wall time of the same job over nothing new).
  The second run, on the same consumer group, starts, loads the catalog and stops: what is
  left is the time spent on the events. JSON decoding is included (the job reads raw bytes).
- JVM CPU-seconds per 100k events, and the peak resident memory (VmHWM) of the JVM.
- where the time goes: each task's busy time (Flink's busyTimeMsPerSecond, sampled through
  the mini-cluster's REST API during the run), as a share of the busy time of all tasks.
Target: >= 50k events/s sustained on this 2-core machine.
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
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_producer import make_events  # noqa: E402  the same event mix as the producer benchmark
from support import bench_settings, free_port  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from yieldmeter.contracts import UsageEvent, to_json_bytes  # noqa: E402
from yieldmeter.prices import build_catalog, publish  # noqa: E402
from yieldmeter.topics import admin_client, create_topics  # noqa: E402
from yieldmeter.pipeline_jobs import start_pipeline  # noqa: E402

TARGET = 50_000
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
    """The JVM the PyFlink driver started (the mini-cluster runs in it), found through /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children[int(stat.read_text().rsplit(")", 1)[1].split()[1])].append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    todo = list(children[pid])
    while todo:
        child = todo.pop()
        try:
            if b"java" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0]:
                return child
        except OSError:
            pass
        todo += children[child]
    return None


class Watch(threading.Thread):
    """Samples the JVM's peak memory and CPU, and each task's busy time, while the job runs."""

    def __init__(self, driver_pid: int, rest_port: int):
        super().__init__(daemon=True)
        self.driver_pid, self.rest = driver_pid, f"http://127.0.0.1:{rest_port}"
        self.peak_kb = 0
        self.cpu_s = 0.0
        self.busy: dict[str, list[float]] = defaultdict(list)
        self.done = threading.Event()

    def get(self, path: str):
        with urlopen(self.rest + path, timeout=2) as response:
            return json.load(response)

    def run(self) -> None:
        java = None
        while not self.done.is_set():
            java = java or java_descendant(self.driver_pid)
            if java:
                try:
                    status = Path(f"/proc/{java}/status").read_text()
                    self.peak_kb = max(self.peak_kb, int(status.split("VmHWM:")[1].split()[0]))
                    stat = Path(f"/proc/{java}/stat").read_text().rsplit(")", 1)[1].split()
                    self.cpu_s = (int(stat[11]) + int(stat[12])) / 100  # utime + stime, clock ticks
                except (OSError, IndexError, ValueError):
                    pass
                self.sample_busy()
            time.sleep(1)

    def sample_busy(self) -> None:
        try:
            for job in self.get("/jobs")["jobs"]:
                if job["status"] != "RUNNING":
                    continue
                for vertex in self.get(f"/jobs/{job['id']}")["vertices"]:
                    metrics = self.get(f"/jobs/{job['id']}/vertices/{vertex['id']}/subtasks/metrics?get=busyTimeMsPerSecond&agg=sum")
                    if metrics:
                        self.busy[vertex["name"]].append(float(metrics[0]["sum"]))
        except (OSError, ValueError, KeyError):
            pass


def short(vertex: str) -> str:
    """'Source: events_src[1] -> Calc[2] -> Correlate[3] -> ...' -> the operators that matter."""
    names = [part.split("[")[0].replace("Source: ", "") for part in vertex.replace("(", " -> ").split(" -> ")]
    keep = [n.strip() for n in names if n.strip() and not n.strip().startswith(("Calc", ")"))]
    return " -> ".join(dict.fromkeys(keep))[:70]


def run(settings, parallelism: int, group: str, topics: dict) -> tuple[float, Watch]:
    rest_port = free_port()
    options = json.loads(os.environ.get("BENCH_JOB_OPTIONS", "{}"))  # e.g. '{"out_of_orderness": "1min"}'
    job = start_pipeline(settings, group_id=group, parallelism=parallelism, flink_conf=f"rest.port={rest_port}",
                         checkpoint_dir=(settings.state_path / "ckpt" / group).as_uri(), **topics | options)  # fmt: skip
    watch = Watch(job.process.pid, rest_port)
    watch.start()
    started = time.monotonic()
    job.wait(1800)
    seconds = time.monotonic() - started
    watch.done.set()
    watch.join()
    return seconds, watch


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
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
        print(f"input: {n:,} records ({bad:,} dead letters, {dup:,} re-deliveries), written in "
              f"{time.monotonic() - started:.1f} s; catalog: {len(catalog.prices):,} prices")  # fmt: skip
        print(f"\n{'parallelism':>11} {'events/s':>10} {'run s':>7} {'idle s':>7} {'JVM CPU s/100k':>15} {'JVM peak MB':>12}")
        profiles = {}
        for parallelism in (1, 2):
            outputs = new_topics(f"p{parallelism}")
            topics = {f"{k}_topic": inputs[k] if k in ("events", "prices") else outputs[k] for k in PARTITIONS}
            group = f"bench-{parallelism}-{uuid.uuid4().hex[:6]}"
            full, watch = run(settings, parallelism, group, topics)
            idle, _ = run(settings, parallelism, group, topics)  # nothing new: start-up and shutdown only
            priced = committed_count(settings, outputs["priced"], PARTITIONS["priced"])
            dead = committed_count(settings, outputs["dlq"], PARTITIONS["dlq"])
            assert priced + dead + dup == n, f"priced {priced} + dead letters {dead} + re-deliveries {dup} != {n}"
            rate = n / (full - idle)
            print(f"{parallelism:>11} {rate:>10,.0f} {full:>7.1f} {idle:>7.1f} {watch.cpu_s / n * 1e5:>15.1f} "
                  f"{watch.peak_kb / 1024:>12,.0f}")  # fmt: skip
            profiles[parallelism] = watch.busy
        for parallelism, busy in profiles.items():
            means = {short(v): sum(s) / len(s) for v, s in busy.items() if s}
            total = sum(means.values()) or 1
            print(f"\nwhere the time goes, parallelism {parallelism} (busy time of each task, share of all):")
            for vertex, ms in sorted(means.items(), key=lambda kv: -kv[1]):
                print(f"  {ms / total:6.1%}  {vertex}")
        print(f"\ntarget: >= {TARGET:,} events/s")


if __name__ == "__main__":
    main()
