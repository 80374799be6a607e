"""Pipeline job: validate, price, deduplicate and sessionize usage events, exactly once.

Inputs: --events-topic (UsageEvent JSON, any bytes), --prices-topic (PriceRecord and
OrgDiscount JSON, compacted; held whole in memory by every pricing task). Outputs:
--priced-topic (one priced call per event_id), --sessions-topic (one row per closed session,
and one correction per call that came after its session closed), --dlq-topic (each rejected
record with the reason). Exactly-once Kafka sinks (read them read_committed). jobs/README.md
describes fields, state and delivery; docs/pricing.md the pricing rules.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py beside this file
from common import (  # noqa: E402
    base_parser,
    bounded_stops,
    duration_ms,
    execute,
    finish_bounded,
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
    """Register the functions, tables and views; return the statement set of the three INSERTs."""
    for name, class_name in FUNCTIONS.items():
        t_env.create_java_temporary_system_function(name, class_name)
    statements = render_sql(
        "pipeline",
        events_options=kafka_options(args, args.events_topic, source=True),
        prices_bootstrap=sql_string(args.bootstrap),
        prices_topic=sql_string(args.prices_topic),
        priced_options=kafka_options(args, args.priced_topic, source=False),
        sessions_options=kafka_options(args, args.sessions_topic, source=False),
        dlq_options=kafka_options(args, args.dlq_topic, source=False),
        out_of_orderness=sql_interval(args.out_of_orderness),
        session_gap=sql_interval(args.session_gap),
        watermark_emit=args.watermark_emit,
    )
    return statement_set_from_sql(t_env, statements)


def with_dedup_ttl(plan_json: str, ttl_ms: int) -> str:
    """The compiled plan with a state TTL on the event_id deduplication only.

    The deduplication's ids are the state that grows with traffic; a job-wide TTL would also
    expire open session windows. Flink's way to give one operator its own TTL is to edit the
    compiled plan.
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
    parser.add_argument("--sessions-topic", required=True)
    parser.add_argument("--dlq-topic", required=True)
    parser.add_argument("--dedup-ttl", type=duration_ms, default="24h",
                        help="how long an event_id is remembered to drop re-deliveries (default 24h)")
    parser.add_argument("--session-gap", type=duration_ms, default="30min",
                        help="inactivity that closes a session, in event time (default 30min)")
    parser.add_argument("--out-of-orderness", type=duration_ms, default="5min",
                        help="how far behind the newest call time a call may arrive and still join its "
                        "session; later calls are marked late and become session corrections (default 5min)")
    parser.add_argument("--idle-timeout", type=duration_ms, default="5s",
                        help="a partition without new records stops holding the watermark back after this "
                        "(default 5s); until then open sessions wait for it")
    parser.add_argument("--watermark-emit", choices=("on-periodic", "on-event"), default="on-periodic",
                        help="on-event advances the watermark after every record: slower, but which call is late "
                        "no longer depends on timing (tests)")
    parser.add_argument("--model-rules", help="model id rules exported by yieldmeter (default: trim and lower-case only)")


def submit(args):
    """Start the job; returns its TableResult (wait() on it for a bounded run)."""
    # The Java functions' jar (built once per version) goes with the job's jars.
    args.jars = ";".join(filter(None, [args.jars, udf_jar(args.model_rules, args.jars).as_uri()]))
    t_env = table_environment(args, "pipeline")
    if args.bounded:
        bounded_stops(args, args.events_topic)
    return execute(t_env, build_pipeline(t_env, args), lambda plan: with_dedup_ttl(plan, args.dedup_ttl))


def main(argv=None) -> None:
    parser = base_parser(__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    submit(args).wait()
    if args.bounded:
        finish_bounded(args)


if __name__ == "__main__":
    main()
