"""Smoke job: copy one Kafka topic to another through Flink SQL, exactly once.

Inputs: --source-topic (any bytes). Output: --sink-topic, JSON
{payload, source_partition, source_offset, is_json}. Delivery: exactly-once
(transactions committed on checkpoints); readers use read_committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py beside this file
from common import base_parser, kafka_options, render_sql, table_environment  # noqa: E402


def build_pipeline(t_env, args):
    """Register the tables and return the statement set that moves the data."""
    statements = render_sql(
        "smoke",
        source_options=kafka_options(args, args.source_topic, source=True),
        sink_options=kafka_options(args, args.sink_topic, source=False),
    )
    *ddl, insert = statements
    for statement in ddl:
        t_env.execute_sql(statement)
    statement_set = t_env.create_statement_set()
    statement_set.add_insert_sql(insert)
    return statement_set


def main(argv=None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--source-topic", required=True)
    parser.add_argument("--sink-topic", required=True)
    args = parser.parse_args(argv)
    t_env = table_environment(args, "smoke")
    build_pipeline(t_env, args).execute().wait()


if __name__ == "__main__":
    main()
