"""Pipeline: the price job, then the sessionize and controls jobs on its output, from one driver.

Bounded: price runs to the end offsets present at start, then sessionize and controls read
everything the price job committed and stop. Continuous: all run side by side until cancelled.
Each is its own Flink job (own checkpoints under --checkpoint-dir/price, /sessionize and
/controls), because pricing wants a watermark that trails by a second and sessions one that
waits minutes for stragglers, and spend controls none at all. Options: those of jobs/price.py,
jobs/sessionize.py and jobs/controls.py; the later jobs' consumer groups are
<group-id>.sessionize and <group-id>.controls. The controls job runs when --budgets-topic and
--controls-topic are given (and, in a bounded run, when the budgets topic holds a record).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the jobs beside this file
import controls  # noqa: E402
import price  # noqa: E402
import sessionize  # noqa: E402
from common import base_parser, end_offsets, finish_bounded  # noqa: E402


def parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    price.add_arguments(parser)
    # The later jobs' own options; those several jobs have (topics, idleness) are given once.
    for job in (sessionize, controls):
        known = {option for action in parser._actions for option in action.option_strings}
        theirs = argparse.ArgumentParser(add_help=False)
        job.add_arguments(theirs)
        for action in theirs._actions:
            if not set(action.option_strings) & known:
                action.required = action.required and job is not controls  # controls: optional
                parser._add_action(action)
    return parser


def sub_args(args, job: str):
    """The options of one of the two jobs: its own checkpoint folder and consumer group."""
    mine = copy.copy(args)
    if args.checkpoint_dir:
        mine.checkpoint_dir = f"{args.checkpoint_dir.rstrip('/')}/{job}"
    if job in ("sessionize", "controls"):
        mine.group_id = f"{args.group_id}.{job}"
    return mine


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    pricing, sessions = sub_args(args, "price"), sub_args(args, "sessionize")
    with_controls = bool(args.budgets_topic and args.controls_topic)
    if args.bounded:
        price.submit(pricing).wait()
        finish_bounded(pricing)
        # Then the others on what the price job committed. A bounded run without a single
        # budget has no control to publish: no controls job (it reads the priced calls from the
        # beginning on every fresh start, so nothing is skipped). (Asked only now: the JVM
        # has the Kafka client once the price job's environment loaded the connector.)
        after = [(sessionize, sessions)]
        if with_controls and any(end_offsets(pricing, args.budgets_topic).values()):
            after.append((controls, sub_args(args, "controls")))
        running = [(job.submit(job_args), job_args) for job, job_args in after]
        for result, job_args in running:
            result.wait()
            finish_bounded(job_args)
    else:
        running = [price.submit(pricing), sessionize.submit(sessions)]
        if with_controls:
            running.append(controls.submit(sub_args(args, "controls")))
        for result in running:
            result.wait()


if __name__ == "__main__":
    main()
