"""What every yieldmeter PyFlink job shares: its command line and its table environment.

Jobs run in the Flink environment (.venv-flink), not the app's: they import only pyflink
and the standard library. All configuration arrives on the command line, so the same file
runs on the local mini-cluster (`yieldmeter flink run JOB`) and on a cluster
(`flink run -py jobs/JOB.py -pyfs jobs/common.py -- --bootstrap ...`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from string import Template
from urllib.parse import urlsplit
from urllib.request import url2pathname

JOBS_DIR = Path(__file__).resolve().parent
SQL_DIR = JOBS_DIR / "sql"
UDF_DIR = JOBS_DIR / "udf"
MODES = ("bounded", "continuous")


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--group-id", required=True, help="Kafka consumer group of this job")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--checkpoint-dir", help="durable checkpoint folder or URI (file://, s3://)")
    parser.add_argument("--checkpoint-interval", default="2s", help="also the exactly-once commit interval")
    parser.add_argument("--jars", default="", help="';'-separated connector jar URLs (empty on a cluster with them in lib/)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--bounded", dest="bounded", action="store_true", default=True,
                      help="read up to the end offsets present at start, then finish (default)")
    mode.add_argument("--continuous", dest="bounded", action="store_false", help="run until cancelled")
    parser.add_argument("--restore-from", help="checkpoint to resume from (default: the newest one in --checkpoint-dir)")
    parser.add_argument("--fresh", action="store_true",
                        help="discard the checkpoints in --checkpoint-dir and start from the committed group offsets")
    parser.add_argument("--flink-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="any other Flink option, e.g. state.backend.type=rocksdb (repeatable)")
    return parser


def add_event_time_arguments(parser) -> None:
    """The event-time options of both pipeline jobs (pipeline.py passes one value to both)."""
    parser.add_argument("--out-of-orderness", type=duration_ms, default="5min",
                        help="how far behind the newest call time a call may arrive and still join its "
                        "session; later calls are marked late and become session corrections (default 5min)")
    parser.add_argument("--idle-timeout", type=duration_ms, default="5s",
                        help="a partition without new records stops holding the watermark back after this "
                        "(default 5s); until then the joins and windows hold every call read meanwhile")
    parser.add_argument("--watermark-emit", choices=("on-periodic", "on-event"), default="on-periodic",
                        help="on-event advances the watermark after every record: slower, but which call is late "
                        "no longer depends on timing (tests)")


def table_environment(args, job_name: str):
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = t_env.get_config()
    if args.jars:
        config.set("pipeline.jars", args.jars)
    config.set("parallelism.default", str(args.parallelism))
    config.set("pipeline.name", job_name)
    config.set("table.local-time-zone", "UTC")  # every timestamp on the wire is UTC
    # Chained operators hand rows over without a deep copy (Flink SQL's operators copy what they keep).
    config.set("pipeline.object-reuse", "true")
    # A failing job retries a few times, then fails for good (the default retries forever).
    config.set("restart-strategy.type", "fixed-delay")
    config.set("restart-strategy.fixed-delay.attempts", "3")
    config.set("restart-strategy.fixed-delay.delay", "2 s")
    # Exactly-once Kafka sinks commit their transactions on checkpoints.
    config.set("execution.checkpointing.interval", args.checkpoint_interval)
    config.set("execution.checkpointing.mode", "EXACTLY_ONCE")
    if args.checkpoint_dir:
        mode = "bounded" if args.bounded else "continuous"
        config.set("execution.checkpointing.dir", f"{args.checkpoint_dir.rstrip('/')}/{mode}")
        # Kept when the process dies (a crash, SIGKILL, Ctrl-C); dropped when a bounded run finishes.
        config.set("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    if getattr(args, "idle_timeout", None) is not None:
        # A source partition without new records stops holding the watermark back after this.
        # (Job-wide: in our runs on Flink 2.2 the per-table 'scan.watermark.idle-timeout' stopped
        # the watermark for good once a partition came back from idle.)
        config.set("table.exec.source.idle-timeout", f"{args.idle_timeout} ms")
    for option in args.flink_conf:
        key, _, value = option.partition("=")
        config.set(key.strip(), value.strip())
    restore = args.restore_from or latest_checkpoint(args)
    args.resumed = bool(restore)
    if restore:
        print(f"Resuming from checkpoint {restore}", file=sys.stderr, flush=True)
        config.set("execution.state-recovery.path", restore)
        # The resumed job owns the checkpoint: Flink deletes it once a newer one exists or the
        # job finishes, so it is never resumed twice.
        config.set("execution.state-recovery.claim-mode", "CLAIM")
    return t_env


# --- resuming after a crash ------------------------------------------------------------------
#
# Checkpoints live in <checkpoint-dir>/<mode>/<job id>/chk-<n>. A job resumes from the newest
# completed one, which holds its Kafka positions, open sessions, dedup ids and prices, and the
# exactly-once sinks' pending transactions: output committed before the crash is not written
# again, and nothing after it is lost. A checkpoint of the other mode cannot be resumed (a
# restored Kafka split keeps the end offset of the run that started it), so that is an error.


def _local_dir(uri: str | None) -> Path | None:
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(url2pathname(parts.path))
    return Path(uri) if not parts.scheme else None  # s3:// and the like: pass --restore-from


def latest_checkpoint(args) -> str | None:
    """The checkpoint this run resumes from, or None; cleans up what can never be resumed."""
    root = _local_dir(args.checkpoint_dir)
    if root is None or not root.exists():
        return None
    if args.fresh:
        shutil.rmtree(root)
        return None
    completed = sorted(
        (meta.stat().st_mtime, mode, meta.parent)
        for mode in MODES
        for meta in (root / mode).glob("*/chk-*/_metadata")
    )
    newest = completed[-1] if completed else None
    for mode in MODES:  # older job folders are superseded; empty ones are left-overs
        for job_dir in (root / mode).glob("*"):
            if newest is None or job_dir != newest[2].parent:
                shutil.rmtree(job_dir, ignore_errors=True)
    if newest is None:
        return None
    _, mode, checkpoint = newest
    wanted = "bounded" if args.bounded else "continuous"
    if mode != wanted:
        sys.exit(
            f"The last {mode} run of this job did not finish; its state is in {checkpoint}. "
            f"Run it again {'without --continuous' if mode == 'bounded' else 'with --continuous'} to resume it, "
            "or pass --fresh to discard it (open sessions and pending output of that run are then lost)."
        )
    return checkpoint.as_uri()


# --- durations -------------------------------------------------------------------------------

_UNITS_MS = {"ms": 1, "s": 1000, "sec": 1000, "min": 60_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str) -> int:
    """'30min', '5 s', '24h', '1d', '500ms' -> milliseconds (argparse type)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-z]+)\s*", text.lower())
    if not match or match.group(2) not in _UNITS_MS:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration; write e.g. 30min, 5s, 24h, 1d or 500ms")
    return int(match.group(1)) * _UNITS_MS[match.group(2)]


def sql_interval(ms: int) -> str:
    """A Flink SQL interval literal of exactly ms milliseconds."""
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


# --- the Java functions ----------------------------------------------------------------------
#
# The decoders (jobs/udf) are compiled here, once per source version, against the Flink jars of
# this PyFlink, and shipped with the job through pipeline.jars: on a cluster too, the client
# builds the jar and Flink sends it to the task managers. Needs a JDK (javac), as Maven does.

# Without exported rules (--model-rules) model ids are only trimmed, lower-cased and stripped of a
# path prefix and a date suffix; normalize.py's patterns, kept in step by a test.
_NO_MODEL_RULES = json.dumps({
    "provider_catalogue": {}, "provider_spellings": {}, "canonical": {}, "aliases": {}, "providers": [],
    "trailing_date": r"[-@](?:20\d\d-\d\d-\d\d|20\d\d\d\d\d\d)$", "gemini_version": r"^(gemini-.+)-\d{3}$",
}).encode()


def _kafka_connector(jars: str) -> list[Path]:
    """The local Kafka connector jar among the job's --jars (file: URIs or paths, ';'-separated)."""
    found = [path for path in (_local_dir(j.strip()) for j in jars.split(";") if j.strip())
             if path is not None and path.name.startswith("flink-sql-connector-kafka")]
    if not found:
        raise SystemExit(
            "The pricing function reads the prices topic with the Kafka connector's client: pass the "
            "flink-sql-connector-kafka jar with --jars (on a cluster too, so the client can compile against it)."
        )
    return found


def udf_jar(model_rules: str | None = None, jars: str = "") -> Path:
    """The jar of jobs/udf with model_rules.json inside (built if this version is not cached).

    Compiled against this PyFlink's jars and the Kafka connector's shaded client (CatalogFeed).
    """
    import pyflink

    sources = sorted(UDF_DIR.rglob("*.java"))
    rules = Path(model_rules).read_bytes() if model_rules else _NO_MODEL_RULES
    flink_lib = Path(pyflink.__file__).parent / "lib"
    connector = _kafka_connector(jars)
    digest = hashlib.sha256(rules + str(flink_lib).encode() + str(connector).encode())
    for source in sources:
        digest.update(source.read_bytes())
    # One cache for every state folder on this machine (the name is the content's hash): a test
    # suite or a new installation compiles the functions once, not once per run.
    cache = Path(tempfile.gettempdir()) / "yieldmeter-udf"
    jar = cache / f"yieldmeter-udf-{digest.hexdigest()[:16]}.jar"
    if jar.exists():
        return jar
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as build:
        classpath = os.pathsep.join(str(j) for j in [*sorted(flink_lib.glob("*.jar")), *connector])
        compiled = subprocess.run(
            ["javac", "--release", "11", "-nowarn", "-d", build, "-cp", classpath, *map(str, sources)],
            capture_output=True, text=True,
        )
        if compiled.returncode != 0:
            raise SystemExit(f"Compiling the job's Java functions failed:\n{compiled.stderr}")
        partial = Path(build) / "udf.jar"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as out:
            out.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
            for path in sorted(Path(build).rglob("*.class")):
                out.write(path, path.relative_to(build).as_posix())
            out.writestr("dev/yieldmeter/flink/model_rules.json", rules)
        os.replace(partial, jar)  # atomic: a concurrent build never sees half a jar
    return jar


def kafka_options(args, topic: str, *, source: bool, from_start: bool = False) -> str:
    """The WITH (...) options of a Kafka table, filled from the command line.

    A source resumes from its group's committed offsets (from the beginning when it has none),
    or with ``from_start`` reads the topic from the beginning on every fresh start (state the
    job must rebuild whole, as the controls job's budgets and spend).
    """
    options = {"connector": "kafka", "topic": topic, "properties.bootstrap.servers": args.bootstrap}
    if source:
        options |= {
            "properties.group.id": args.group_id,
            "properties.isolation.level": "read_committed",
            "scan.startup.mode": "earliest-offset" if from_start else "group-offsets",
            "properties.auto.offset.reset": "earliest",
        }
        stops = getattr(args, "stop_offsets", {}).get(topic)
        # No partitions known (empty stops): nothing to pin, read to the latest offsets instead
        # (an empty 'scan.bounded.specific-offsets' does not even parse).
        if args.bounded and stops:
            options["scan.bounded.mode"] = "specific-offsets"
            options["scan.bounded.specific-offsets"] = ";".join(f"partition:{p},offset:{o}" for p, o in sorted(stops.items()))
        elif args.bounded:
            options["scan.bounded.mode"] = "latest-offset"
    else:
        options |= {
            "sink.delivery-guarantee": "exactly-once",
            "sink.transactional-id-prefix": f"{args.group_id}-{topic}",
            # Must exceed the checkpoint interval plus a restart; the broker caps it (15 min).
            "properties.transaction.timeout.ms": "600000",
        }
    return ",\n  ".join(f"'{key}' = '{value}'" for key, value in options.items())


# --- bounded runs: where they stop, and committing it -----------------------------------------
#
# Flink commits a source's offsets to Kafka asynchronously after each checkpoint, as a bookmark
# (its exactly-once rests on checkpoints, not on these offsets), and the last commit of a
# bounded run can be lost as the job shuts down: the next run would read the tail again. So a
# bounded run fixes its end offsets before it starts (kept beside the checkpoints, so a resumed
# run stops at the same place) and, once the job has finished and its output is committed,
# commits them itself, synchronously: persist -> commit offsets -> done.


def _kafka_packages():
    """The Kafka client packages of the connector on the job's classpath, through the JVM."""
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm

    def package(name: str):
        node = jvm
        for part in name.split("."):
            node = getattr(node, part)
        return node

    for prefix in ("org.apache.flink.kafka.shaded.org.apache.kafka", "org.apache.kafka"):
        consumer = package(f"{prefix}.clients.consumer")
        if type(consumer.KafkaConsumer).__name__ == "JavaClass":  # else py4j answers a JavaPackage
            return jvm, consumer, package(f"{prefix}.common")
    raise SystemExit("The Kafka connector's classes are not on the job's classpath (pass --jars).")


def _consumer(args, group: str):
    jvm, consumer, common = _kafka_packages()
    properties = jvm.java.util.Properties()
    deserializer = f"{common._fqn}.serialization.ByteArrayDeserializer"
    for key, value in {
        "bootstrap.servers": args.bootstrap, "group.id": group, "enable.auto.commit": "false",
        "isolation.level": "read_committed", "key.deserializer": deserializer, "value.deserializer": deserializer,
    }.items():
        properties.setProperty(key, value)
    return jvm, consumer, common, consumer.KafkaConsumer(properties)


def end_offsets(args, topic: str) -> dict[int, int]:
    """The read_committed end offset of every partition of ``topic``."""
    jvm, _, common, client = _consumer(args, args.group_id)
    try:
        partitions = jvm.java.util.ArrayList()
        for info in client.partitionsFor(topic):
            partitions.add(common.TopicPartition(topic, info.partition()))
        ends = client.endOffsets(partitions)
        return {tp.partition(): int(ends.get(tp)) for tp in partitions}
    finally:
        client.close()


def commit_offsets(args, group: str, topic: str, offsets: dict[int, int]) -> None:
    jvm, consumer, common, client = _consumer(args, group)
    try:
        commits = jvm.java.util.HashMap()
        for partition, offset in offsets.items():
            commits.put(common.TopicPartition(topic, partition), consumer.OffsetAndMetadata(offset))
        client.commitSync(commits)
    finally:
        client.close()


def _stops_file(args) -> Path | None:
    root = _local_dir(args.checkpoint_dir)
    return root / "bounded-end-offsets.json" if root else None


def bounded_stops(args, *topics: str) -> None:
    """Fix where this bounded run stops reading ``topics`` (args.stop_offsets; see above)."""
    saved = _stops_file(args)
    state = json.loads(saved.read_text()) if saved and saved.exists() else None
    if state and state["finished"]:  # the last run finished but did not get to commit: do it now
        _commit(args, state["offsets"])
        state = None
    if args.resumed and state:
        args.stop_offsets = {t: {int(p): o for p, o in offsets.items()} for t, offsets in state["offsets"].items()}
        return
    args.stop_offsets = {topic: end_offsets(args, topic) for topic in topics}
    if saved:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"offsets": args.stop_offsets, "finished": False}))


def _commit(args, offsets: dict) -> None:
    for topic, partitions in offsets.items():
        commit_offsets(args, args.group_id, topic, {int(p): o for p, o in partitions.items()})


def job_main(doc: str, add_arguments, submit, argv=None) -> None:
    """A job's command line: its options, then run it (bounded: and commit where it stopped)."""
    parser = base_parser(doc.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    submit(args).wait()
    if args.bounded:
        finish_bounded(args)


def finish_bounded(args) -> None:
    """After a bounded run succeeded: commit where it stopped, so the next run starts there."""
    saved = _stops_file(args)
    offsets = getattr(args, "stop_offsets", {})
    if saved:
        saved.write_text(json.dumps({"offsets": offsets, "finished": True}))
    _commit(args, offsets)
    if saved:
        saved.unlink()


_VIEW = re.compile(r"CREATE\s+TEMPORARY\s+VIEW\s+(\w+)\s+AS\s+(.*)", re.IGNORECASE | re.DOTALL)


def statement_set_from_sql(t_env, statements: list[str]):
    """Run the DDL, create the views, and collect the INSERTs into one statement set.

    A view becomes a Table object, not a SQL view: each reference to a SQL view is expanded
    anew, so the planner could build the same decoding and pricing once per INSERT that reads
    it. One Table is planned once and shared.
    """
    statement_set = t_env.create_statement_set()
    for statement in statements:
        view = _VIEW.match(statement)
        if view:
            t_env.create_temporary_view(view.group(1), t_env.sql_query(view.group(2)))
        elif statement.upper().startswith("INSERT"):
            statement_set.add_insert_sql(statement)
        else:
            t_env.execute_sql(statement)
    return statement_set


def execute(t_env, statement_set, edit_plan=None):
    """Submit the statement set (through its compiled plan when ``edit_plan`` rewrites the JSON)."""
    if edit_plan is None:
        return statement_set.execute()
    from pyflink.table import PlanReference
    from pyflink.table.compiled_plan import CompiledPlan

    plan = edit_plan(statement_set.compile_plan().as_json_string())
    loaded = t_env.load_plan(PlanReference.from_json_string(plan))
    # PyFlink 2.2's load_plan hands the plan the Java environment, whose execute() then fails.
    return CompiledPlan(loaded._j_compiled_plan, t_env).execute()


def sql_string(value: str) -> str:
    """``value`` for use inside a SQL string literal ('' for ')."""
    return value.replace("'", "''")


def render_sql(name: str, **values: str) -> list[str]:
    """jobs/sql/<name>.sql with ${placeholders} filled, split into statements."""
    text = Template((SQL_DIR / f"{name}.sql").read_text()).substitute(values)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    # Split on the semicolons outside string literals (an option value may hold one).
    statements, current, quoted = [], [], False
    for char in body:
        if char == "'":
            quoted = not quoted  # '' inside a literal toggles twice
        if char == ";" and not quoted:
            statements.append("".join(current))
            current = []
        else:
            current.append(char)
    statements.append("".join(current))
    return [statement.strip() for statement in statements if statement.strip()]
