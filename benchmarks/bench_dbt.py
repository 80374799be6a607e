"""dbt figures: `yieldmeter transform` (dbt build: every model and every test) on the embedded
warehouse at 1M and 10M calls, full and incremental: wall time and peak memory.

    .venv/bin/python benchmarks/bench_dbt.py [CALLS ...] [--new N] [--refreshes CYCLES]
    (default: 1000000 10000000, N 100000, CYCLES 3)

(10M calls take about ten minutes in all: pass 1000000 alone for a quick run.)

This machine's speed varies by a third or more within a day, so the benchmark prints it at the
start and around the refreshes (support.machine_speed: fixed work in Python and in the engine):
figures from different hours compare only beside it.

For each size, a fresh embedded warehouse is migrated and filled inside ClickHouse
(INSERT ... SELECT from numbers()): calls priced from a small catalog (so the repricing audit
finds nothing), six calls per session, the sessions the pipeline would have closed (aggregated
from those calls, so every reconciliation test holds), one outcome for 60 % of sessions
(linked by session id, trace id or user and time, like the simulator's apps) and a few late
calls as corrections, all stored two hours ago. Then, each time as its own process the way a user
runs it, with its peak RSS (VmHWM: dbt, dbt-clickhouse and the chdb engine in one process) read
from /proc while it runs, and after the merges the process before left have finished (chdb
merges only while a process holds the warehouse: a full build at 10M leaves about 15 s of them,
which the next build's deletes would wait for; printed when they take a second or more):
  1. `yieldmeter transform`: the first build, full;
  2. N new calls (new sessions of the same users over the last two days, their sessions, outcomes
     and late calls) are stored, and the incremental refresh runs: the models alone (dbt run), as
     `yieldmeter run` schedules it (transform.SCHEDULED_BUILD: no unit tests, no full_history tests), as `yieldmeter transform`
     (every test);
  3. the baseline: `yieldmeter transform --full-refresh` over the same data, what every refresh
     cost before the marts were incremental;
  4. the refresh as `yieldmeter run` makes it, what the 10 s target is about: in one process that
     keeps the warehouse open, CYCLES times: N new calls are stored, the merges their inserts
     started are let finish (the builds of `yieldmeter run` are minutes apart), and the scheduled
     build runs as its hook runs it (transform.ScheduledBuilds: the project parsed once, as the
     process starts; the views built by the first refresh, left out after it). dbt's
     seconds and the process's peak RSS during the build (VmHWM, reset before each). The builds
     run back to back, so the look-back margin (var incremental_lookback_minutes) is 0: with its
     10 minutes each build would take in every earlier batch of the run too.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import PROJECT_ROOT, machine_speed, run_with_peak_rss  # noqa: E402

from yieldmeter.config import Settings  # noqa: E402
from yieldmeter.transform import SCHEDULED_BUILD, ScheduledBuilds, transform as build  # noqa: E402
from yieldmeter.warehouse import migrate, open_warehouse  # noqa: E402

DAYS = 28
USERS = 3000
CALLS_PER_SESSION = 6
PRICES = [  # model, input, output, cache read (USD per million tokens)
    ("gpt-4o", "2.5", "10", "1.25"),
    ("gpt-4o-mini", "0.15", "0.6", "0.075"),
    ("o3", "2", "8", "0.5"),
]


def next_session(call: int) -> int:
    """The first call of the first whole session from `call` on: a batch starting there does not
    add calls, days later, to the last session of the one before."""
    return -(-call // CALLS_PER_SESSION) * CALLS_PER_SESSION


def fill(client, calls: int, first: int = 0, days: tuple[int, int] = (0, DAYS), ingested: str = "now64(3)") -> None:
    """Calls first .. first + calls - 1 over the given days, with their sessions and outcomes,
    stored at ``ingested`` (an SQL time)."""
    sessions = calls // CALLS_PER_SESSION
    if not first:
        client.command("""
            INSERT INTO prices (price_id, provider, model, service_tier, effective_from, input_per_mtok,
                output_per_mtok, cache_read_per_mtok, source, schema_version, _topic, _partition, _offset, _timestamp,
                _ingested_at) VALUES """ + ", ".join(
            f"('', 'openai', '{m}', 'default', '1970-01-01 00:00:00', {i}, {o}, {c}, 'genai-prices', 1, 'usage.prices', "
            f"0, {n}, now64(3), {ingested})" for n, (m, i, o, c) in enumerate(PRICES)))
    new = f"toUInt64(substring(event_id, 3)) >= {first}"
    # session s: user s % USERS (org, team and app follow from the user), six calls a minute apart
    # from a start spread over the month; model by session; 1 call in 50 fails.
    client.command(f"""
        INSERT INTO calls (event_id, occurred_at, org_id, team, user_id, app, provider, request_model, response_model,
            model, operation, service_tier, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens,
            reasoning_tokens, session_id, session_key, trace_id, status, tool_calls, attributes, pricing_status,
            price_id, cost_input_usd, cost_cache_read_usd, cost_output_usd, list_cost_usd, cost_usd,
            source_topic, source_partition, source_offset, schema_version, _topic, _partition, _offset, _timestamp,
            _ingested_at)
        WITH
            intDiv(number, {CALLS_PER_SESSION}) AS s,
            s % {USERS} AS u,
            ['support-bot', 'coding-agent', 'sales-assistant', 'doc-summarizer'][1 + u % 4] AS app_name,
            ['gpt-4o', 'gpt-4o-mini', 'o3'][1 + (s * 7) % 3] AS m,
            [2.5, 0.15, 2][1 + (s * 7) % 3] AS r_in, [10, 0.6, 8][1 + (s * 7) % 3] AS r_out,
            [1.25, 0.075, 0.5][1 + (s * 7) % 3] AS r_cache,
            if(number % 50 = 0, 'error', 'ok') AS st,
            1000 + (number * 13) % 6000 AS inp, if(st = 'ok', intDiv(inp, 3), 0) AS cached,
            if(st = 'ok', 150 + (number * 7) % 900, 0) AS outp,
            CAST(toDecimal128(inp - cached, 0) * toDecimal128(r_in, 4) * toDecimal64('0.000001', 6) AS Decimal(38, 15)) AS c_in,
            CAST(toDecimal128(cached, 0) * toDecimal128(r_cache, 4) * toDecimal64('0.000001', 6) AS Decimal(38, 15)) AS c_cache,
            CAST(toDecimal128(outp, 0) * toDecimal128(r_out, 4) * toDecimal64('0.000001', 6) AS Decimal(38, 15)) AS c_out
        SELECT
            concat('e-', toString(number)),
            toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + toIntervalSecond({days[0]} * 86400 + (s * 7919) % ({days[1] - days[0]} * 86400))
                + toIntervalSecond(60 * (number % {CALLS_PER_SESSION})),
            concat('org', toString(u % 3)), concat('team', toString(u % 12)), concat('u', toString(u)), app_name,
            'openai', m, m, m, 'chat', 'default', inp, cached, 0, outp, 0,
            concat('s-', toString(s)), concat('org', toString(u % 3), '/s-', toString(s)),
            if(app_name = 'coding-agent', concat('t-', toString(s)), ''),
            st, 0, map(), 'priced', concat('openai/', m, '/default@1970-01-01T00:00:00.000Z'),
            c_in, c_cache, c_out, c_in + c_cache + c_out, CAST(c_in + c_cache + c_out AS Decimal(38, 21)),
            'usage.events', 0, number, 1, 'usage.priced', 0, number, now64(3), {ingested}
        FROM numbers({first}, {calls})""", settings={"max_insert_threads": 2})
    # the sessions the pipeline closes: every call but one in a thousand sessions' last, which
    # arrives late and comes as a correction of its own
    session_columns = """session_uid, session_key, is_correction, org_id, team, user_id, app, session_id, started_at,
        ended_at, calls, errors, cancelled, retries, unpriced_calls, input_tokens, cache_read_tokens,
        cache_write_tokens, output_tokens, reasoning_tokens, tool_calls, max_input_tokens, models_used,
        list_cost_usd, cost_usd, _topic, _partition, _offset, _timestamp, _ingested_at"""
    late = f"(toUInt64(substring(event_id, 3)) % {CALLS_PER_SESSION} = {CALLS_PER_SESSION - 1} AND session_id LIKE '%000')"
    client.command(f"""
        INSERT INTO sessions ({session_columns})
        SELECT lower(hex(MD5(concat(session_key, '|', toString(min(occurred_at)))))), session_key, false,
            any(org_id), any(team), any(user_id), any(app), any(session_id), min(occurred_at), max(occurred_at),
            count(), countIf(status = 'error'), 0, 0, 0, sum(input_tokens), sum(cache_read_tokens), 0,
            sum(output_tokens), 0, 0, max(input_tokens), arraySort(groupUniqArray(model)), sum(list_cost_usd),
            sum(cost_usd), 'usage.sessions', 0, 0, now64(3), {ingested}
        FROM calls WHERE {new} AND NOT {late} GROUP BY session_key""", settings={"max_insert_threads": 2})
    client.command(f"""
        INSERT INTO sessions ({session_columns})
        SELECT lower(hex(MD5(concat('late|', event_id)))), session_key, true, org_id, team, user_id, app, session_id,
            occurred_at, occurred_at, 1, status = 'error', 0, 0, 0, input_tokens, cache_read_tokens, 0, output_tokens,
            0, 0, input_tokens, [model], list_cost_usd, cost_usd, 'usage.sessions', 0, 0, now64(3), {ingested}
        FROM calls WHERE {new} AND {late}""")
    # outcomes: 60 % of sessions, 10 minutes after the session's last call, 75 % successful;
    # support-bot and doc-summarizer name their session, coding-agent its trace, sales neither
    client.command(f"""
        INSERT INTO outcomes (outcome_id, occurred_at, org_id, team, user_id, app, session_id, trace_id, outcome_type,
            success, value_usd, attributes, schema_version, _topic, _partition, _offset, _timestamp, _ingested_at)
        SELECT concat('o-', session_id), ended_at + toIntervalMinute(10), org_id, team, user_id, app,
            if(app IN ('support-bot', 'doc-summarizer'), session_id, ''),
            if(app = 'coding-agent', concat('t-', substring(session_id, 3)), ''),
            transform(app, ['support-bot', 'coding-agent', 'sales-assistant', 'doc-summarizer'],
                      ['ticket_resolved', 'pr_merged', 'lead_qualified', 'task_completed'], ''),
            cityHash64(session_id) % 4 != 0,
            if(app = 'sales-assistant', toDecimal128(1500, 9), NULL), map(), 1, 'usage.outcomes', 0, 0, now64(3),
            {ingested}
        FROM sessions WHERE toUInt64(substring(session_id, 3)) >= {first // CALLS_PER_SESSION} AND NOT is_correction
            AND cityHash64(session_key) % 10 < 6""", settings={"max_insert_threads": 2})
    counted = client.query("SELECT (SELECT count() FROM calls), (SELECT count() FROM sessions), "
                           "(SELECT countIf(is_correction) FROM sessions), (SELECT count() FROM outcomes)").result_rows[0]
    print(f"  {'generated' if not first else 'now'} {counted[0]:,} calls, {counted[1]:,} session rows ({counted[2]:,} late-call corrections), "
          f"{counted[3]:,} outcomes (about {sessions:,} sessions)")


def transform(work: Path, label: str, *args: str) -> float:
    """`yieldmeter transform ARGS` as its own process: prints and returns its wall time. The merges
    the last process left are let finish first (chdb merges only while a process holds the
    warehouse, so they would fall on this one's deletes) and their seconds printed."""
    with open_warehouse(f"chdb://{work / 'warehouse'}") as client:
        merged_s = settle(client) - SETTLE_QUIET_S
    if merged_s >= 1:
        print(f"  (merges left by the process before: {merged_s:.0f}s, let finish first)")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YIELDMETER_")},
           "YIELDMETER_STATE_DIR": str(work)}
    command = [str(PROJECT_ROOT / ".venv" / "bin" / "yieldmeter"), "transform", *args, "--quiet"]
    started = time.monotonic()
    result, peak_mb = run_with_peak_rss(command, env=env, cwd=work)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit(f"yieldmeter transform {' '.join(args)} failed")
    summary = [line for line in result.stdout.splitlines() if "dbt " in line]
    print(f"  {label}: {seconds:.1f}s wall, peak RSS {peak_mb:,.0f} MB")
    print(f"    {summary[-1].strip() if summary else ''}")
    return seconds


SETTLE_QUIET_S = 5.0


def settle(client, quiet_s: float = SETTLE_QUIET_S) -> float:
    """Until no merge has run for quiet_s seconds; returns the seconds waited."""
    started = quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        time.sleep(0.5)
        if client.query("SELECT count() FROM system.merges").result_rows[0][0]:
            quiet_since = time.monotonic()
    return time.monotonic() - started


def cycles(work: Path, first: int, new: int, count: int) -> list[float]:
    """`count` refreshes as `yieldmeter run` makes them (see the module's docstring, step 4), in this
    process: prints and returns dbt's seconds of each."""
    settings = Settings(_env_file=None, state_dir=work)
    seconds = []
    # back to back, so no look-back margin (the module's docstring); the parse with the same vars,
    # or the first build would parse again (dbt keys a parsed project by its vars)
    no_lookback = ["--vars", "{incremental_lookback_minutes: 0}"]
    with open_warehouse(settings.warehouse_url) as client:  # held open, as by yieldmeter run
        parsed = build(settings, ["parse", "--quiet", *no_lookback], keep_manifest=True)  # as yieldmeter run starts
        print(f"  the project parsed once, before the first refresh (as yieldmeter run): {parsed.seconds:.1f}s")
        print(f"  {machine_speed(client)}")
        scheduled_build = ScheduledBuilds(settings, [*no_lookback, "--quiet"])
        for cycle in range(count):
            fill(client, new, first=first, days=(DAYS - 2, DAYS))
            first = next_session(first + new)
            settle(client)
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM
            run = scheduled_build()
            peak_kb = int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                               if line.startswith("VmHWM:")).split()[1])
            if not run.success:
                raise SystemExit(f"the scheduled build failed: {run.failures()[:3]}")
            print(f"  refresh {cycle + 1} as yieldmeter run makes it ({new:,} new calls): dbt {run.seconds:.1f}s, "
                  f"peak RSS {peak_kb / 1024:,.0f} MB ({sum(run.counts().values())} models and tests)")
            seconds.append(run.seconds)
        print(f"  {machine_speed(client)}")
    return seconds


def bench(calls: int, new: int, refreshes: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="ym-bench-dbt-"))
    try:
        url = f"chdb://{work / 'warehouse'}"
        started = time.monotonic()
        with open_warehouse(url) as client:
            print(f"  {machine_speed(client)}")
            migrate(client)
            fill(client, calls, ingested="now64(3) - toIntervalHour(2)")
        print(f"  filled in {time.monotonic() - started:.0f}s")
        transform(work, f"full build at {calls:,} calls (yieldmeter transform, first run)")
        first = next_session(calls)
        with open_warehouse(url) as client:
            fill(client, new, first=first, days=(DAYS - 2, DAYS))
        # each refresh below sees the same new calls: they were stored less than the look-back margin ago
        transform(work, f"incremental refresh after {new:,} new calls, the models alone (dbt run)", "run")
        incremental = transform(work, "incremental refresh as `yieldmeter run` schedules it (SCHEDULED_BUILD)",
                                *SCHEDULED_BUILD)
        transform(work, "incremental refresh, yieldmeter transform (every test)")
        full = transform(work, "baseline: full rebuild of the same data (yieldmeter transform --full-refresh)",
                         "--full-refresh")
        print(f"  incremental {incremental:.1f}s against a full rebuild of {full:.1f}s ({full / incremental:.1f}x)")
        first = next_session(first + new)
        refreshed = cycles(work, first, new, refreshes)
        print(f"  yieldmeter run's refresh: {min(refreshed):.1f}-{max(refreshed):.1f}s of dbt (target 10 s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    options = {"--new": 100_000, "--refreshes": 3}
    for option in options:
        if option in arguments:
            at = arguments.index(option)
            options[option] = int(arguments[at + 1])
            del arguments[at:at + 2]
    sizes = [int(a) for a in arguments] or [1_000_000, 10_000_000]
    for size in sizes:
        print(f"== {size:,} calls")
        bench(size, options["--new"], options["--refreshes"])
