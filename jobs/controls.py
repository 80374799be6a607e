"""Controls job: each budget's spend in its current period, and the decision, exactly once.

Inputs: --priced-topic (the price job's output, read_committed), --budgets-topic (Budget JSON,
compacted, read whole on a fresh start). Output: --controls-topic (compacted, one record per
budget: state ok/warn/throttle/block, spent, limit, remaining, period end, reason). Spend is
kept in Flink state, checkpointed with the input offsets, so each call counts once; the output
is an upsert stream of whole states. jobs/README.md describes fields, state and delivery.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py beside this file
from common import (  # noqa: E402
    bounded_stops,
    duration_ms,
    execute,
    job_main,
    kafka_options,
    render_sql,
    statement_set_from_sql,
    table_environment,
)


def period_sql(local_time: str, period: str, time_zone: str) -> tuple[str, str]:
    """Flink SQL for the [start, end) in UTC ('yyyy-MM-dd HH:mm:ss') of the day or month holding
    ``local_time`` (the same instant as local text in ``time_zone``): local midnights, converted
    back. yieldmeter.budgets.period_bounds is the reference; a test holds the two together."""
    local_start = (f"CASE WHEN {period} = 'day' THEN CONCAT(SUBSTRING({local_time}, 1, 10), ' 00:00:00') "
                   f"ELSE CONCAT(SUBSTRING({local_time}, 1, 7), '-01 00:00:00') END")
    local_end = (f"DATE_FORMAT(CASE WHEN {period} = 'day' THEN TIMESTAMPADD(DAY, 1, TO_TIMESTAMP({local_start})) "
                 f"ELSE TIMESTAMPADD(MONTH, 1, TO_TIMESTAMP({local_start})) END, 'yyyy-MM-dd HH:mm:ss')")
    return f"CONVERT_TZ({local_start}, {time_zone}, 'UTC')", f"CONVERT_TZ({local_end}, {time_zone}, 'UTC')"


def controls_options(args) -> str:
    """The upsert-kafka sink: at-least-once (each record is a whole state, so a repeat is
    harmless), so records go out as they come rather than on checkpoints; with a
    --flush-interval, only the latest per budget every interval."""
    options = {
        "connector": "upsert-kafka", "topic": args.controls_topic, "properties.bootstrap.servers": args.bootstrap,
        "sink.delivery-guarantee": "at-least-once",
    }
    if args.flush_interval:
        options |= {"sink.buffer-flush.interval": f"{args.flush_interval} ms", "sink.buffer-flush.max-rows": "10000"}
    return ",\n  ".join(f"'{key}' = '{value}'" for key, value in options.items())


def build_pipeline(t_env, args):
    """Register the tables and views; return the statement set of the controls INSERT."""
    # Barriers overtake the records in flight: an aligned checkpoint holds a join's faster input
    # until the other's barrier arrives, and the controls came out seconds late around each one.
    t_env.get_config().set("execution.checkpointing.unaligned.enabled", "true")
    if args.mini_batch:
        # Aggregate in small batches: at thousands of calls a second, one update per quarter
        # hour and budget per batch instead of a retraction and an insert per call.
        config = t_env.get_config()
        config.set("table.exec.mini-batch.enabled", "true")
        config.set("table.exec.mini-batch.allow-latency", f"{args.mini_batch} ms")
        config.set("table.exec.mini-batch.size", "5000")
    call_start, call_end = period_sql("local_time", "`period`", "time_zone")  # PERIOD is a keyword
    now = "CONVERT_TZ(DATE_FORMAT(CURRENT_TIMESTAMP, 'yyyy-MM-dd HH:mm:ss'), 'UTC', b.time_zone)"
    now_start, now_end = period_sql(now, "b.`period`", "b.time_zone")
    statements = render_sql(
        "controls",
        # Both from the beginning on a fresh start: a budget's period began before this run, and
        # a budget set later must find the calls before it. Restored from a checkpoint, both
        # continue where they were.
        # A read_committed fetch waits for data past the last commit for up to fetch.max.wait.ms
        # (500 ms by default): a committed transaction would often be read half a second late.
        priced_options=kafka_options(args, args.priced_topic, source=True, from_start=True)
        + ",\n  'properties.fetch.max.wait.ms' = '50'",
        budgets_options=kafka_options(args, args.budgets_topic, source=True, from_start=True),
        controls_options=controls_options(args),
        state_ttl=f"{args.state_ttl} ms",
        call_period_start=call_start, call_period_end=call_end,
        now_period_start=now_start, now_period_end=now_end,
    )
    return statement_set_from_sql(t_env, statements)


def add_arguments(parser) -> None:
    parser.add_argument("--priced-topic", required=True)
    parser.add_argument("--budgets-topic", required=True)
    parser.add_argument("--controls-topic", required=True)
    parser.add_argument("--flush-interval", type=duration_ms, default="0ms",
                        help="buffer the controls this long and send the latest per budget; 0ms (default): send "
                        "each as it comes (the mini-batches already bound them to one per budget and batch)")
    parser.add_argument("--mini-batch", type=duration_ms, default="200ms",
                        help="the aggregations' mini-batch latency; 0ms turns mini-batches off (default 200ms)")
    parser.add_argument("--state-ttl", type=duration_ms, default="62d",
                        help="spend per quarter hour is kept this long after its last call; longer than the "
                        "longest period (a month), so a late call still lands in its period (default 62d)")


def submit(args):
    t_env = table_environment(args, "controls")
    if args.bounded:
        bounded_stops(args, args.priced_topic, args.budgets_topic)
    return execute(t_env, build_pipeline(t_env, args))


def main(argv=None) -> None:
    job_main(__doc__, add_arguments, submit, argv)


if __name__ == "__main__":
    main()
