"""Pipeline: the price job, then the sessionize job on its output, from one driver.

Bounded: price runs to the end offsets present at start, then sessionize reads everything the
price job committed and stops. Continuous: both run side by side until cancelled. Each is its
own Flink job (own checkpoints under --checkpoint-dir/price and /sessionize), because pricing
wants a watermark that trails by a second and sessions one that waits minutes for stragglers.
Options: those of jobs/price.py and jobs/sessionize.py; the sessionize job's consumer group is
<group-id>.sessionize.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the jobs beside this file
import price  # noqa: E402
import sessionize  # noqa: E402
from common import base_parser, finish_bounded  # noqa: E402


def parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    price.add_arguments(parser)
    # The sessionize job's own options; those both jobs have (topics, idleness) are given once.
    known = {option for action in parser._actions for option in action.option_strings}
    theirs = argparse.ArgumentParser(add_help=False)
    sessionize.add_arguments(theirs)
    for action in theirs._actions:
        if not set(action.option_strings) & known:
            parser._add_action(action)
    return parser


def sub_args(args, job: str):
    """The options of one of the two jobs: its own checkpoint folder and consumer group."""
    mine = copy.copy(args)
    if args.checkpoint_dir:
        mine.checkpoint_dir = f"{args.checkpoint_dir.rstrip('/')}/{job}"
    if job == "sessionize":
        mine.group_id = f"{args.group_id}.sessionize"
    return mine


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    pricing, sessions = sub_args(args, "price"), sub_args(args, "sessionize")
    if args.bounded:
        price.submit(pricing).wait()
        finish_bounded(pricing)
        sessionize.submit(sessions).wait()  # reads everything the price job committed
        finish_bounded(sessions)
    else:
        running = [price.submit(pricing), sessionize.submit(sessions)]
        for result in running:
            result.wait()


if __name__ == "__main__":
    main()
