"""What every yieldmeter PyFlink job shares: its command line and its table environment.

Jobs run in the Flink environment (.venv-flink), not the app's: they import only pyflink
and the standard library. All configuration arrives on the command line, so the same file
runs on the local mini-cluster (`yieldmeter flink run JOB`) and on a cluster
(`flink run -py jobs/JOB.py -pyfs jobs/common.py -- --bootstrap ...`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from string import Template

SQL_DIR = Path(__file__).resolve().parent / "sql"


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--group-id", required=True, help="Kafka consumer group of this job")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--checkpoint-dir", help="durable checkpoint folder or URI (file://, s3://)")
    parser.add_argument("--checkpoint-interval", default="5s", help="also the exactly-once commit interval")
    parser.add_argument("--jars", default="", help="';'-separated connector jar URLs (empty on a cluster with them in lib/)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--bounded", dest="bounded", action="store_true", default=True,
                      help="read up to the end offsets present at start, then finish (default)")
    mode.add_argument("--continuous", dest="bounded", action="store_false", help="run until cancelled")
    return parser


def table_environment(args, job_name: str):
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = t_env.get_config()
    if args.jars:
        config.set("pipeline.jars", args.jars)
    config.set("parallelism.default", str(args.parallelism))
    config.set("pipeline.name", job_name)
    # Exactly-once Kafka sinks commit their transactions on checkpoints.
    config.set("execution.checkpointing.interval", args.checkpoint_interval)
    config.set("execution.checkpointing.mode", "EXACTLY_ONCE")
    if args.checkpoint_dir:
        config.set("execution.checkpointing.dir", args.checkpoint_dir)
        config.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    return t_env


def kafka_options(args, topic: str, *, source: bool) -> str:
    """The WITH (...) options of a Kafka table, filled from the command line."""
    options = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": args.bootstrap}
    if source:
        options |= {
            "properties.group.id": args.group_id,
            "properties.isolation.level": "read_committed",
            "scan.startup.mode": "group-offsets",
            "properties.auto.offset.reset": "earliest",
        }
        if args.bounded:
            options["scan.bounded.mode"] = "latest-offset"
    else:
        options |= {
            "sink.delivery-guarantee": "exactly-once",
            "sink.transactional-id-prefix": f"{args.group_id}-{topic}",
            # Must exceed the checkpoint interval plus a restart; the broker caps it (15 min).
            "properties.transaction.timeout.ms": "600000",
        }
    return ",\n  ".join(f"'{key}' = '{value}'" for key, value in options.items())


def render_sql(name: str, **values: str) -> list[str]:
    """jobs/sql/<name>.sql with ${placeholders} filled, split into statements."""
    text = Template((SQL_DIR / f"{name}.sql").read_text()).substitute(values)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in body.split(";") if statement.strip()]
