"""Sessionize job: group priced calls into sessions in event time, exactly once.

Input: --priced-topic (the price job's output, read_committed). Output: --sessions-topic (one
row per closed session, and one correction per call that arrived after its session closed).
A session is the calls of one key (the explicit session_id, else org/user/app) with gaps
shorter than --session-gap. jobs/README.md describes fields, lateness, state and delivery.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py beside this file
from common import (  # noqa: E402
    add_event_time_arguments,
    bounded_stops,
    duration_ms,
    execute,
    job_main,
    kafka_options,
    render_sql,
    sql_interval,
    statement_set_from_sql,
    table_environment,
)


def build_pipeline(t_env, args):
    """Register the tables and views; return the statement set of the sessions INSERT."""
    statements = render_sql(
        "sessionize",
        priced_options=kafka_options(args, args.priced_topic, source=True),
        sessions_options=kafka_options(args, args.sessions_topic, source=False),
        out_of_orderness=sql_interval(args.out_of_orderness),
        session_gap=sql_interval(args.session_gap),
        watermark_emit=args.watermark_emit,
    )
    return statement_set_from_sql(t_env, statements)


def add_arguments(parser) -> None:
    parser.add_argument("--priced-topic", required=True)
    parser.add_argument("--sessions-topic", required=True)
    parser.add_argument("--session-gap", type=duration_ms, default="30min",
                        help="inactivity that closes a session, in event time (default 30min)")
    add_event_time_arguments(parser)


def submit(args):
    t_env = table_environment(args, "sessionize")
    if args.bounded:
        bounded_stops(args, args.priced_topic)
    return execute(t_env, build_pipeline(t_env, args))


def main(argv=None) -> None:
    job_main(__doc__, add_arguments, submit, argv)


if __name__ == "__main__":
    main()
