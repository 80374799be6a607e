"""The main job: Kafka, the Flink pipeline, the warehouse ingest, and the per-cycle work.

One process owns the embedded warehouse: it ingests, and on every cycle it runs the cycle
hooks (dbt, alerts) on the same client. The Flink job runs beside it as a subprocess.

    run(settings, until_caught_up=True)   # bounded: everything in the topics now, then stop
    run(settings)                         # continuous, until Ctrl-C / SIGTERM

Order of shutdown: stop the Flink job (its sinks commit on the final checkpoint or abort),
then finish the ingest batch in flight, then close the warehouse. A restart resumes the job
from its newest checkpoint and the ingest from its committed offsets, so nothing is lost or
doubled (see yieldmeter/ingest.py for the warehouse side).

A Flink job runs in its own process group, so it outlives a runner that is killed (SIGKILL,
OOM). The groups of the jobs a run started are recorded in <state>/flink/jobs.pid; the next
run stops any of them still running before it starts its own, because two jobs on the same
checkpoints, consumer group and transactional ids would write the same output twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Callable, Protocol

from clickhouse_connect.driver.client import Client
from confluent_kafka import KafkaException

from yieldmeter.config import Settings
from yieldmeter.errors import YieldmeterError
from yieldmeter.flink import FlinkJob, kill_process_group
from yieldmeter.ingest import IngestStats, WarehouseIngest
from yieldmeter.kafka_local import LocalKafka
from yieldmeter.pipeline_jobs import start_pipeline
from yieldmeter.topics import ensure_topics
from yieldmeter.warehouse import apply_retention, migrate, open_warehouse

log = logging.getLogger(__name__)
JOBS_FILE = "flink/jobs.pid"  # process groups of the running jobs, one per line


class CycleHook(Protocol):
    """Work done on the warehouse once per cycle (dbt, alerts). Gets the client and the run's state."""

    def __call__(self, client: Client, state: RunState) -> str | None: ...


@dataclass
class RunState:
    """What the live status line shows."""

    started: float = field(default_factory=time.monotonic)
    ingest: IngestStats = field(default_factory=IngestStats)
    lag: dict[str, int] = field(default_factory=dict)
    job: str = "starting"
    cycles: int = 0
    sessions: int = 0
    calls: int = 0
    spend_usd: Decimal = Decimal(0)
    last_hook: str = ""
    dbt_failure: str = ""  # why the last dbt build failed, "" once one succeeds (`yieldmeter run`'s hook)

    @property
    def events_per_second(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.ingest.records / elapsed if elapsed else 0.0


def ensure_kafka(settings: Settings) -> bool:
    """Start the local broker if the settings use it and it is down; True if this call started it."""
    if not settings.uses_local_kafka:
        return False
    broker = LocalKafka(settings)
    if broker.pid() is not None:
        return False
    broker.start()
    return True


def ensure_prices(settings: Settings) -> int:
    """Publish the genai-prices seed when the prices topic holds nothing yet (a fresh install)."""
    from yieldmeter.prices import build_catalog, publish, read_topic

    if read_topic(settings, timeout_s=15).messages:
        return 0
    return publish(build_catalog(), settings)


def _refresh(client: Client, state: RunState, ingest: WarehouseIngest) -> None:
    try:
        state.lag = ingest.lag()
    except KafkaException as error:
        # The broker is unreachable for now (restarting, say): the job and the ingest's consumer
        # retry on their own, and a job that gives up stops the run; the status line must not.
        log.warning("Kafka unreachable, lag not refreshed: %s", error.args[0].str())
    row = client.query("SELECT sum(calls), sum(cost_usd) FROM calls_hourly").result_rows[0]
    state.calls, state.spend_usd = int(row[0] or 0), Decimal(row[1] or 0)
    state.sessions = client.query("SELECT count() FROM sessions WHERE NOT is_correction").result_rows[0][0]


def run(
    settings: Settings,
    *,
    until_caught_up: bool = False,
    cycle_s: float = 30.0,
    hooks: tuple[CycleHook, ...] = (),
    on_update: Callable[[RunState], None] = lambda state: None,
    job_args: dict | None = None,
    stop: threading.Event | None = None,
) -> RunState:
    """Run the pipeline. Returns the final state; raises YieldmeterError if the Flink job fails."""
    stop = stop or threading.Event()
    with _stop_on_signals(stop):
        return _run(settings, until_caught_up, cycle_s, hooks, on_update, job_args or {}, stop)


@contextmanager
def _stop_on_signals(stop: threading.Event):
    """Ctrl-C (SIGINT) and SIGTERM set ``stop``: the loop ends at its next check, the ingest
    after its batch. Not a KeyboardInterrupt: a library in the middle of its work may swallow
    one (dbt's runner catches every exception, so a Ctrl-C during a dbt build was lost and the
    run went on). A second Ctrl-C interrupts at once. The previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(settings, until_caught_up, cycle_s, hooks, on_update, job_args, stop) -> RunState:
    state = RunState()
    ensure_kafka(settings)
    ensure_topics(settings)
    ensure_prices(settings)
    with open_warehouse(settings.warehouse_url) as client:
        migrate(client)
        apply_retention(client, settings.retention_days)
        ingest = WarehouseIngest(settings, client)
        stop_stale_jobs(settings)
        job: FlinkJob = start_pipeline(settings, bounded=until_caught_up, **job_args)
        jobs_file = settings.state_path / JOBS_FILE
        jobs_file.write_text(f"{job.process.pid}\n")  # a job's process group id is its pid (start_new_session)
        state.job = "running"
        try:
            _loop(client, ingest, job, state, until_caught_up, cycle_s, hooks, on_update, stop)
        except KeyboardInterrupt:
            stop.set()
        finally:
            still_running = job.process.poll() is None
            job.stop()
            jobs_file.unlink(missing_ok=True)
            ingest.close()
            if still_running:
                state.job = "stopped"  # it resumes from its newest checkpoint next time
            elif job.process.returncode != 0 and state.job != "failed":
                state.job = f"exited {job.process.returncode}"
    return state


def _job_processes(settings: Settings, group: int) -> list[int]:
    """The live processes of process group ``group`` that belong to a Flink job of this state
    folder (the job's driver and JVM name <state>/flink on their command lines; a reused
    group id of another program does not)."""
    folder = settings.state_path / "flink"
    markers = (str(folder).encode(), folder.as_uri().encode())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if any(marker in cmdline for marker in markers):
            found.append(int(entry.name))
    return found


def stop_stale_jobs(settings: Settings, timeout_s: float = 30) -> int:
    """Stop the Flink jobs a killed run left behind, if they still run; returns how many.

    Killed as FlinkJob.stop kills a job (its docstring says why not SIGTERM): the new jobs resume
    from the newest checkpoints, the recovery the crash tests cover. Only the
    process that owns the warehouse calls this, so the run that started them cannot be alive
    (with a ClickHouse server, two runs on one state folder are not supported).
    """
    jobs_file = settings.state_path / JOBS_FILE
    try:
        groups = [int(line) for line in jobs_file.read_text().split()]
    except (FileNotFoundError, ValueError):
        groups = []
    stale = [group for group in groups if _job_processes(settings, group)]
    for group in stale:
        log.warning("A Flink job of an earlier run (process group %d) is still running: stopping it first.", group)
        kill_process_group(group, timeout_s)
    jobs_file.unlink(missing_ok=True)
    return len(stale)


def _loop(client, ingest, job, state, until_caught_up, cycle_s, hooks, on_update, stop) -> None:
    next_cycle = time.monotonic() + cycle_s

    def slice_over() -> bool:
        return stop.is_set() or time.monotonic() >= next_cycle or job.process.poll() is not None

    while not stop.is_set():
        job_done = job.process.poll() is not None
        if job_done and job.process.returncode != 0:
            state.job = "failed"
            raise YieldmeterError(f"The Flink pipeline job failed (exit {job.process.returncode}).\n{job.log_tail()}")
        if job_done:
            state.job = "finished"
        _merge(state.ingest, ingest.run(until_caught_up=job_done, should_stop=slice_over if not job_done else stop.is_set))
        if job_done or time.monotonic() >= next_cycle:
            _refresh(client, state, ingest)
            for hook in hooks:
                state.last_hook = hook(client, state) or state.last_hook
            state.cycles += 1
            next_cycle = time.monotonic() + cycle_s
        on_update(state)
        if job_done:  # bounded: caught up; continuous: the job ended, so does the run
            return


def _merge(total: IngestStats, part: IngestStats) -> None:
    total.records += part.records
    total.rejected += part.rejected
    total.skipped_redelivered += part.skipped_redelivered
    total.tombstones += part.tombstones
    total.batches += part.batches
    total.seconds += part.seconds
    for table, count in part.inserted.items():
        total.inserted[table] += count
