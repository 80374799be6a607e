"""`yieldmeter ingest`, dying at the worst moment: batch N stored, its offsets not committed.

    python -m tests.integration.crashing_ingest N [yieldmeter ingest options]

The fault is injected here, around the real command (a test seam: the package has no fault
switch): the process exits with status 70 when the ingest is about to commit batch N.
"""

import os
import sys

from yieldmeter.cli import main
from yieldmeter.ingest import WarehouseIngest

CRASHED = 70


def crash_before_commit(batch: int) -> None:
    commit = WarehouseIngest._commit
    calls = 0

    def commit_or_die(self, messages):
        nonlocal calls
        calls += 1
        if calls == batch:
            os._exit(CRASHED)  # no clean-up, no flush: as a kill would leave it
        commit(self, messages)

    WarehouseIngest._commit = commit_or_die


if __name__ == "__main__":
    crash_before_commit(int(sys.argv[1]))
    sys.argv = ["yieldmeter", "ingest", *sys.argv[2:]]
    main()
