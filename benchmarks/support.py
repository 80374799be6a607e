"""What the benchmarks share: a broker to run against, and how to measure memory and CPU."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from yieldmeter.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: its fetched jars and venvs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def bench_settings(prefix: str = "ym-bench-") -> Iterator[Settings]:
    """Settings for a benchmark: the brokers in YIELDMETER_KAFKA_BOOTSTRAP, else a local KRaft
    broker on free ports with its state in a temporary folder, stopped at the end."""
    import shutil

    work = Path(tempfile.mkdtemp(prefix=prefix))
    broker = None
    try:
        if bootstrap := os.environ.get("YIELDMETER_KAFKA_BOOTSTRAP"):
            settings = Settings(_env_file=None, state_dir=work, kafka_bootstrap=bootstrap)
        else:
            from yieldmeter.kafka_local import LocalKafka

            lib = os.environ.get("YIELDMETER_LIB_DIR") or PROJECT_ROOT / ".yieldmeter" / "lib"
            settings = Settings(_env_file=None, state_dir=work, lib_dir=lib, kafka_port=free_port(),
                                kafka_controller_port=free_port())  # fmt: skip
            broker = LocalKafka(settings)
            print(f"starting a local broker on {settings.bootstrap_servers} …", flush=True)
            broker.start()
        yield settings
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """User + system time of this process (all threads) or of its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_with_peak_rss(command: list[str], **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command; return it and its peak RSS in MB. VmHWM is read from /proc while it runs,
    because a child's ru_maxrss also counts this (large) process's pages from before exec."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    peak_kb, status = 0, Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
            peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, StopIteration):
            pass
        time.sleep(0.05)
    out, err = process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, out, err), peak_kb / 1024


def status_kb(pid: int, field_name: str) -> int:
    """A kB figure of /proc/<pid>/status, e.g. "VmHWM:" (peak resident memory); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def children_by_parent() -> dict[int, list[int]]:
    """The process tree now, from /proc: parent pid -> child pids."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def machine_speed(client) -> str:
    """How fast this machine is now, as two fixed pieces of work on one core (seconds; less is
    faster): Python bytecode, and the ClickHouse engine through ``client``. Its speed varies by a
    third or more within a day here, so a figure compares with one taken in another hour only
    beside these."""
    started = time.perf_counter()
    total = 0
    for number in range(10_000_000):
        total += number % 7
    python_s = time.perf_counter() - started
    started = time.perf_counter()
    client.query("SELECT sum(cityHash64(number)) FROM numbers(300000000) SETTINGS max_threads = 1")
    return f"machine speed now: Python loop {python_s:.2f}s, engine on one thread {time.perf_counter() - started:.2f}s"
