"""Workload simulator throughput and memory: events generated per second, to files.

    .venv/bin/python benchmarks/bench_simulate.py [EVENTS]      (default 1000000)

Generates EVENTS usage events over 14 days into a temporary folder and prints wall and CPU
seconds, events per second (usage lines / wall second), bytes written, and peak memory
(the process's max RSS). Target: 1M events well under a minute, memory flat in EVENTS.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from yieldmeter.simulate import FileSink, SimulationOptions, simulate


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        wall, cpu = time.perf_counter(), time.process_time()
        manifest = simulate(SimulationOptions(events=events), FileSink(Path(folder)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        size = sum(f.stat().st_size for f in Path(folder).iterdir())
    lines = manifest["totals"]["usage_lines"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"simulate: {lines:,} usage lines + {manifest['totals']['outcomes']:,} outcomes "
          f"({manifest['population']['users']:,} users, 14 days)")
    print(f"  {wall:.1f} s wall, {cpu:.1f} s CPU; {lines / wall:,.0f} events/s wall, {lines / cpu:,.0f} events/CPU-s")
    print(f"  {size / 1e6:,.0f} MB written; peak RSS {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
