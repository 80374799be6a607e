"""`yieldmeter demo`: the whole pipeline on a simulated week, from a fresh clone.

It works in its own state folder (<state>/demo, wiped at the start), so it never touches the
data of a pipeline you run yourself: a local broker (on the configured port, or a free one),
a simulated three-org workload, `yieldmeter run --until-caught-up`, then the answers.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import typer

from yieldmeter.cli.output import console, settings
from yieldmeter.config import Settings
from yieldmeter.kafka_local import LocalKafka, port_is_free
from yieldmeter.runner import run
from yieldmeter.simulate import KafkaSink, SimulationOptions, simulate
from yieldmeter.topics import ensure_topics
from yieldmeter.warehouse import open_warehouse


def demo_settings(config: Settings) -> Settings:
    """The demo's own state folder and warehouse; the configured broker port unless taken."""
    import socket

    def free() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    update: dict = {"state_dir": config.state_path / "demo", "clickhouse_url": None}
    if config.uses_local_kafka and not (port_is_free(config.kafka_port) and port_is_free(config.kafka_controller_port)):
        update |= {"kafka_port": free(), "kafka_controller_port": free()}
    return config.model_copy(update=update)


def demo(
    events: int = typer.Option(1_000_000, "--events", help="Usage events to simulate."),
    days: int = typer.Option(7, "--days", help="Days the workload spans (ending today, midnight UTC)."),
    seed: int = typer.Option(42, "--seed"),
) -> None:
    """Run the pipeline end to end on a simulated workload and print what it found."""
    base = settings()
    config = demo_settings(base)
    shutil.rmtree(config.state_path, ignore_errors=True)
    broker = LocalKafka(config) if config.uses_local_kafka else None
    t0 = time.monotonic()
    try:
        if broker:
            with console.status("Starting Kafka…"):
                broker.start()
        console.print(f"[green]✓[/green] Kafka on {config.bootstrap_servers}")
        ensure_topics(config)
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
        with console.status(f"Simulating {events:,} events over {days} days…"):
            t = time.monotonic()
            manifest = simulate(SimulationOptions(events=events, days=days, seed=seed, start=start),
                                KafkaSink(config, manifest_path=config.state_path / "manifest.json"))
        totals = manifest["totals"]
        console.print(f"[green]✓[/green] simulated {totals['usage_lines']:,} usage events and "
                      f"{totals['outcomes']:,} outcomes for {len(manifest['per_org'])} orgs "
                      f"in {time.monotonic() - t:.0f}s (planted: tokenmaxxers, overkill, a spend spike, bad input)")
        with console.status("Running the pipeline until caught up (Flink job + warehouse ingest)…"):
            t = time.monotonic()
            state = run(config, until_caught_up=True, cycle_s=15)
        console.print(f"[green]✓[/green] pipeline: {state.ingest.records:,} records into the warehouse in "
                      f"{time.monotonic() - t:.0f}s; {state.calls:,} calls, {state.sessions:,} sessions, "
                      f"${state.spend_usd:,.2f}")
        with open_warehouse(config.warehouse_url) as client:
            answers = _answers(client)
    finally:
        if broker:
            broker.stop()
    console.print(f"\n[bold]Demo finished in {time.monotonic() - t0:.0f}s.[/bold] Where everything is:")
    console.print(f"  warehouse  {config.warehouse_url}  — query it with "
                  f"YIELDMETER_STATE_DIR={config.state_dir} .venv/bin/yieldmeter sql \"SELECT …\"")
    console.print(f"  manifest   {config.state_path / 'manifest.json'} (what the simulator planted)")
    console.print(f"  logs       {config.state_path / 'flink' / 'logs'}, {config.state_path / 'kafka' / 'logs'}")
    console.print("\n[bold]Three answers[/bold]")
    for number, answer in enumerate(answers, 1):
        console.print(f"  {number}. {answer}")


def _answers(client) -> list[str]:
    """Plain-words answers from the warehouse."""
    answers = []
    rows = client.query("""
        WITH spend AS (SELECT org_id, app, session_id, sum(cost_usd) AS cost FROM calls FINAL
                       WHERE session_id != '' GROUP BY org_id, app, session_id),
             wins AS (SELECT org_id, app, session_id, countIf(success) AS won FROM outcomes FINAL
                      WHERE session_id != '' GROUP BY org_id, app, session_id)
        SELECT s.app, sum(s.cost) / nullIf(sum(w.won), 0) AS per_win, sum(w.won) AS wins
        FROM spend AS s LEFT JOIN wins AS w USING (org_id, app, session_id)
        GROUP BY s.app HAVING wins > 0 ORDER BY per_win DESC LIMIT 1""").result_rows
    if rows:
        app, per_win, wins = rows[0]
        answers.append(f"The costliest outcome is in {app}: ${Decimal(per_win):,.2f} of tokens per successful outcome "
                       f"({wins:,} successes).")
    total, idle = client.query("""
        SELECT sum(s.input_tokens + s.output_tokens),
               sumIf(s.input_tokens + s.output_tokens, o.session_id = '')
        FROM sessions AS s FINAL
        LEFT JOIN (SELECT DISTINCT session_id FROM outcomes FINAL WHERE session_id != '') AS o
          ON o.session_id = s.session_id
        WHERE s.session_id != ''""").result_rows[0]
    if total:
        answers.append(f"{idle / total:.0%} of the tokens in sessions with an explicit session id bought no outcome "
                       "at all (idle tokens).")
    unpriced = client.query("SELECT countIf(pricing_status != 'priced'), count(), any(model) FROM calls FINAL "
                            "WHERE pricing_status != 'priced'").result_rows[0]
    top = client.query("SELECT org_id, team, sum(cost_usd) AS c FROM calls_hourly GROUP BY org_id, team "
                       "ORDER BY c DESC LIMIT 1").result_rows
    if top:
        org, team, cost = top[0]
        answers.append(f"The biggest spender is {org}/{team} with ${Decimal(cost):,.2f}; "
                       f"{unpriced[0]:,} calls could not be priced (e.g. model {unpriced[2] or '—'}).")
    return answers
