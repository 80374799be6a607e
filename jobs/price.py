"""Price job: validate, deduplicate and price usage events, exactly once.

Inputs: --events-topic (UsageEvent JSON, any bytes), --prices-topic (PriceRecord and
OrgDiscount JSON, compacted; held whole in memory by every pricing task). Outputs:
--priced-topic (one priced call per event_id), --dlq-topic (each rejected record with the
reason). Exactly-once Kafka sinks (read them read_committed). jobs/README.md describes fields,
state and delivery; docs/pricing.md the pricing rules.
"""

from __future__ import annotations

import json
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
    sql_string,
    statement_set_from_sql,
    table_environment,
    udf_jar,
)

FUNCTIONS = {
    "YM_EVENT_TIME": "dev.yieldmeter.flink.EventTime",
    "YM_PARSE_USAGE_EVENT": "dev.yieldmeter.flink.UsageEventParser",
    "YM_PRICE": "dev.yieldmeter.flink.CallPricer",
}


def build_pipeline(t_env, args):
    """Register the functions, tables and views; return the statement set of the two INSERTs."""
    for name, class_name in FUNCTIONS.items():
        t_env.create_java_temporary_system_function(name, class_name)
    statements = render_sql(
        "price",
        events_options=kafka_options(args, args.events_topic, source=True),
        prices_bootstrap=sql_string(args.bootstrap),
        prices_topic=sql_string(args.prices_topic),
        priced_options=kafka_options(args, args.priced_topic, source=False),
        dlq_options=kafka_options(args, args.dlq_topic, source=False),
        price_delay=sql_interval(args.price_delay),
        session_lateness=sql_interval(max(args.out_of_orderness - args.price_delay, 0)),
        watermark_emit=args.watermark_emit,
    )
    return statement_set_from_sql(t_env, statements)


def with_dedup_ttl(plan_json: str, ttl_ms: int) -> str:
    """The compiled plan with a state TTL on the event_id deduplication only.

    Only the deduplication keeps state that grows with traffic (one entry per event_id); Flink's
    way to give one operator its own TTL is to edit the compiled plan, which keeps any other
    keyed state a later change adds from expiring by accident.
    """
    plan = json.loads(plan_json)
    found = 0
    for node in plan["nodes"]:
        if node["type"].startswith("stream-exec-deduplicate") and not node["isRowtime"] and not node["keepLastRow"]:
            for state in node["state"]:
                state["ttl"] = f"{ttl_ms} ms"
            found += 1
    if found != 1:
        raise RuntimeError(f"expected one event_id deduplication in the plan, found {found}")
    return json.dumps(plan)


def add_arguments(parser) -> None:
    parser.add_argument("--events-topic", required=True)
    parser.add_argument("--prices-topic", required=True)
    parser.add_argument("--priced-topic", required=True)
    parser.add_argument("--dlq-topic", required=True)
    parser.add_argument("--dedup-ttl", type=duration_ms, default="24h",
                        help="how long an event_id is remembered to drop re-deliveries (default 24h)")
    parser.add_argument("--price-delay", type=duration_ms, default="1s",
                        help="how far this job's watermark trails the newest call (default 1s); each priced "
                        "call carries it, and the sessionize job's watermark follows it")
    add_event_time_arguments(parser)
    parser.add_argument("--model-rules", help="model id rules exported by yieldmeter (default: trim and lower-case only)")


def prepare(args) -> None:
    """Build the Java functions' jar and add it to the job's jars."""
    args.jars = ";".join(filter(None, [args.jars, udf_jar(args.model_rules, args.jars).as_uri()]))


def submit(args):
    """Start the job; returns its TableResult (wait() on it for a bounded run)."""
    prepare(args)
    t_env = table_environment(args, "price")
    if args.bounded:
        bounded_stops(args, args.events_topic)
    return execute(t_env, build_pipeline(t_env, args), lambda plan: with_dedup_ttl(plan, args.dedup_ttl))


def main(argv=None) -> None:
    job_main(__doc__, add_arguments, submit, argv)


if __name__ == "__main__":
    main()
