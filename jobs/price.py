"""Pipeline job: validate, deduplicate, price and sessionize usage events, exactly once.

Inputs: --events-topic (UsageEvent JSON, any bytes), --prices-topic (PriceRecord and
OrgDiscount JSON, compacted). Outputs: --priced-topic (one priced call per event_id),
--sessions-topic (closed sessions and late-call corrections), --dlq-topic (rejected records
with the reason). Event time with watermarks; exactly-once Kafka sinks (read them
read_committed). jobs/README.md describes every field, lateness, state and delivery.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py beside this file
from common import (  # noqa: E402
    base_parser,
    duration_ms,
    kafka_options,
    render_sql,
    sql_interval,
    table_environment,
    udf_jar,
)

FUNCTIONS = {
    "YM_EVENT_TIME": "dev.yieldmeter.flink.EventTime",
    "YM_PARSE_USAGE_EVENT": "dev.yieldmeter.flink.UsageEventParser",
    "YM_CATALOG_TIME": "dev.yieldmeter.flink.CatalogTime",
    "YM_PARSE_CATALOG": "dev.yieldmeter.flink.CatalogParser",
}
_VIEW = re.compile(r"CREATE\s+TEMPORARY\s+VIEW\s+(\w+)\s+AS\s+(.*)", re.IGNORECASE | re.DOTALL)


def build_pipeline(t_env, args):
    """Register the functions, tables and views; return the statement set of the three INSERTs."""
    for name, class_name in FUNCTIONS.items():
        t_env.create_java_temporary_system_function(name, class_name)
    statements = render_sql(
        "pipeline",
        events_options=kafka_options(args, args.events_topic, source=True),
        catalog_options=kafka_options(args, args.prices_topic, source=True, from_start=True),
        priced_options=kafka_options(args, args.priced_topic, source=False),
        sessions_options=kafka_options(args, args.sessions_topic, source=False),
        dlq_options=kafka_options(args, args.dlq_topic, source=False),
        out_of_orderness=sql_interval(args.out_of_orderness),
        session_gap=sql_interval(args.session_gap),
        idle_timeout=f"{args.idle_timeout} ms",
        catalog_idle_timeout=f"{args.catalog_idle_timeout} ms",
        watermark_emit=args.watermark_emit,
    )
    statement_set = t_env.create_statement_set()
    for statement in statements:
        view = _VIEW.match(statement)
        if view:
            # A Table object, not a SQL view: each SQL view reference is expanded anew, and
            # the temporal joins' correlation ids then differ, so the planner would run the
            # pricing twice (once per INSERT). One Table is planned once and shared.
            t_env.create_temporary_view(view.group(1), t_env.sql_query(view.group(2)))
        elif statement.upper().startswith("INSERT"):
            statement_set.add_insert_sql(statement)
        else:
            t_env.execute_sql(statement)
    return statement_set


def with_dedup_ttl(plan_json: str, ttl_ms: int) -> str:
    """The compiled plan with a state TTL on the event_id deduplication only.

    A job-wide table.exec.state.ttl would also expire the temporal joins' price versions of a
    model nobody called for a while, and its next call would come out unpriced. Flink's way to
    give one operator its own TTL is to edit the compiled plan.
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


def parser():
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--events-topic", required=True)
    parser.add_argument("--prices-topic", required=True)
    parser.add_argument("--priced-topic", required=True)
    parser.add_argument("--sessions-topic", required=True)
    parser.add_argument("--dlq-topic", required=True)
    parser.add_argument("--session-gap", type=duration_ms, default="30min",
                        help="inactivity that closes a session, in event time (default 30min)")
    parser.add_argument("--out-of-orderness", type=duration_ms, default="5min",
                        help="how far behind the newest event time a call may arrive and still join its "
                        "session; later calls become corrections (default 5min)")
    parser.add_argument("--dedup-ttl", type=duration_ms, default="24h",
                        help="how long an event_id is remembered to drop re-deliveries (default 24h)")
    parser.add_argument("--idle-timeout", type=duration_ms, default="30s",
                        help="a silent events partition stops holding the watermark back after this (default 30s)")
    parser.add_argument("--catalog-idle-timeout", type=duration_ms, default="10s",
                        help="continuous mode: calls are priced once the prices topic has been quiet this long (default 10s)")
    parser.add_argument("--watermark-emit", choices=("on-periodic", "on-event"), default="on-periodic",
                        help="on-event advances the watermark after every record: slower, but which call is late "
                        "no longer depends on timing (tests)")
    parser.add_argument("--model-rules", help="model id rules exported by yieldmeter (default: trim and lower-case only)")
    return parser


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    jar = udf_jar(args.model_rules).as_uri()
    args.jars = ";".join(filter(None, [args.jars, jar]))
    t_env = table_environment(args, "pipeline")
    from pyflink.table import PlanReference
    from pyflink.table.compiled_plan import CompiledPlan

    plan = build_pipeline(t_env, args).compile_plan().as_json_string()
    loaded = t_env.load_plan(PlanReference.from_json_string(with_dedup_ttl(plan, args.dedup_ttl)))
    # PyFlink 2.2's load_plan hands the plan the Java environment, whose execute() then fails.
    CompiledPlan(loaded._j_compiled_plan, t_env).execute().wait()


if __name__ == "__main__":
    main()
