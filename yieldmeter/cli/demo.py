"""`yieldmeter demo`: the whole pipeline on a simulated week, from a fresh clone.

It works in its own state folder (<state>/demo, wiped at the start), so it never touches the
data of a pipeline you run yourself: a local broker (on the configured port, or a free one),
a simulated three-org workload, `yieldmeter run --until-caught-up`, then the answers.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import typer

from yieldmeter import budgets
from yieldmeter.alerts.replay import demo_alerts
from yieldmeter.cli.output import console, settings
from yieldmeter.config import Settings
from yieldmeter.kafka_local import LocalKafka, port_is_free
from yieldmeter.runner import run
from yieldmeter.share import share_path
from yieldmeter.report import write_report
from yieldmeter.simulate import KafkaSink, SimulationOptions, simulate
from yieldmeter.topics import ensure_topics
from yieldmeter.transform import generate_docs, metric_sql, transform
from yieldmeter.warehouse import open_warehouse


def demo_settings(config: Settings) -> Settings:
    """The demo's own state folder and warehouse; the configured broker port unless taken."""
    import socket

    def free() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    # The jars stay where `make setup` put them (<state>/lib by default), not under demo/.
    update: dict = {"state_dir": config.state_path / "demo", "clickhouse_url": None, "lib_dir": config.lib_path}
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
        demo_budgets = budgets.load_budget_file(EXAMPLE_BUDGETS)
        budgets.publish(demo_budgets, config)
        console.print(f"[green]✓[/green] {len(demo_budgets)} budgets on {config.topic_budgets} "
                      f"(infra/budgets.example.yaml)")
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
        with console.status(f"Simulating {events:,} events over {days} days…"):
            t = time.monotonic()
            manifest = simulate(SimulationOptions(events=events, days=days, seed=seed, start=start),
                                KafkaSink(config, manifest_path=config.state_path / "manifest.json"))
        totals = manifest["totals"]
        console.print(f"[green]✓[/green] simulated {totals['usage_lines']:,} usage events and "
                      f"{totals['outcomes']:,} outcomes for {len(manifest['per_org'])} orgs "
                      f"in {time.monotonic() - t:.0f}s (planted: tokenmaxxers, overkill, a spend spike, bad input)")
        burst = live_burst(config)
        console.print(f"[green]✓[/green] a live burst: {burst} calls from acme's support-bot, now "
                      "(its support team has a $5 daily budget that blocks)")
        with console.status("Running the pipeline until caught up (Flink jobs + warehouse ingest)…"):
            t = time.monotonic()
            state = run(config, until_caught_up=True, cycle_s=15)
        console.print(f"[green]✓[/green] pipeline: {state.ingest.records:,} records into the warehouse in "
                      f"{time.monotonic() - t:.0f}s; {state.calls:,} calls, {state.sessions:,} sessions, "
                      f"${state.spend_usd:,.2f}")
        with console.status("dbt build: staging, intermediate, marts and their tests…"):
            built = transform(config, ["--quiet"])  # its results are summarised below
        failed = [r for r in built.results if getattr(r, "status", "") in ("error", "fail")]
        console.print(f"[green]✓[/green] dbt build: {len(built.results)} models and tests in {built.seconds:.0f}s"
                      + (f", [red]{len(failed)} failed[/red]" if failed else ", all passed"))
        with console.status("dbt docs generate…"):
            docs = generate_docs(config, ["--quiet"])
        with open_warehouse(config.warehouse_url) as client:
            alert_lines = demo_alerts(client, config, manifest)
            report = write_report(client, config.state_path / "report.html")
            answers = _answers(client)
        console.print("[green]✓[/green] alerts replayed over the simulated week:")
        for line in alert_lines:
            console.print(f"    {line}")
        controls = budgets.read_controls(config)
        states = Counter(c.state if c.in_force() else "ok (period over)" for c in controls.values())
        console.print(f"[green]✓[/green] spend controls on {config.topic_controls}: "
                      + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))
        for control in controls.values():
            if control.state in ("block", "throttle") and control.in_force():
                console.print(f"    [red]{control.state}[/red] {control.reason}")
    finally:
        if broker:
            broker.stop()
    console.print(f"\n[bold]Demo finished in {time.monotonic() - t0:.0f}s.[/bold] Where everything is:")
    console.print(f"  warehouse  {config.warehouse_url}  — query it with "
                  f"YIELDMETER_STATE_DIR={config.state_dir} .venv/bin/yieldmeter sql \"SELECT …\"")
    console.print(f"  report     {report}")
    console.print(f"  dbt docs   {docs.target_path / 'index.html'}  — serve it with "
                  f"YIELDMETER_STATE_DIR={config.state_dir} .venv/bin/yieldmeter docs --serve")
    console.print(f"  manifest   {config.state_path / 'manifest.json'} (what the simulator planted)")
    console.print(f"  logs       {config.state_path / 'flink' / 'logs'}, {config.state_path / 'kafka' / 'logs'}")
    console.print("\n[bold]Three answers[/bold]")
    for number, answer in enumerate(answers, 1):
        console.print(f"  {number}. {answer}")


EXAMPLE_BUDGETS = share_path("infra", "budgets.example.yaml")


def live_burst(config: Settings, calls: int = 120) -> int:
    """Calls made now by acme's support-bot on a large context: over its $5 daily budget, so the
    controls job blocks the scope for the rest of the day (New York time)."""
    from yieldmeter.normalize import TokenUsage
    from yieldmeter.sdk import UsageProducer, usage_event

    with UsageProducer(config) as producer:
        for i in range(calls):
            producer.send_usage(usage_event(
                TokenUsage(input_tokens=20_000, cache_read_tokens=4_000, output_tokens=1_200),
                provider="anthropic", model="claude-sonnet-4-5", org_id="acme", team="support",
                user_id=f"agent-{i % 6}", app="support-bot", latency_ms=2_000))
    return calls


def _answers(client) -> list[str]:
    """Three plain-words answers from the dbt marts, with the marts' own metric definitions."""
    answers = []
    # the dearest outcome per org and app (orgs are not mixed: their prices and discounts differ)
    rows = client.query(f"""
        SELECT org_id, app, outcome_type, successful_outcomes, unpriced_calls,
               {metric_sql('cost_per_successful_outcome_usd')} AS per_success
        FROM (SELECT org_id, app, outcome_type, sum(cost_usd) AS cost_usd, sum(unpriced_calls) AS unpriced_calls,
                     sum(successful_outcomes) AS successful_outcomes
              FROM value_metrics_daily WHERE outcome_type != '' GROUP BY org_id, app, outcome_type)
        WHERE successful_outcomes > 0
        ORDER BY per_success IS NULL, per_success DESC LIMIT 1""",
        settings={"prefer_column_name_to_alias": 1}).result_rows
    idle = client.query(f"""
        SELECT {metric_sql('idle_token_share')}
        FROM (SELECT sum(idle_tokens) AS idle_tokens, sum(total_tokens) AS total_tokens FROM value_metrics_daily)""",
        settings={"prefer_column_name_to_alias": 1}).result_rows
    if rows:
        org, app, outcome_type, successes, unpriced, per_success = rows[0]
        cost = (f"${Decimal(per_success):,.2f} of tokens" if per_success is not None
                else f"an unknown amount ({unpriced:,} of its calls have no price)")
        answers.append(f"A successful {outcome_type.replace('_', ' ')} in {org}'s {app} costs {cost} "
                       f"({successes:,} of them), the dearest outcome here; {float(idle[0][0] or 0):.0%} of all "
                       "tokens went into sessions that produced no outcome at all.")
    # Every flagged user of the latest week with a flag, strongest evidence (largest outcome shortfall)
    # first. Not simply the latest week: a week of a day or two is shown but not judged
    # (tokenmaxxing_min_days), so just after Monday 00:00 UTC the newest week has no flag.
    flagged = client.query("""
        SELECT week, entity_id, app, total_tokens, peer_median_tokens, outcome_yield, peer_median_yield
        FROM tokenmaxxing_signals
        WHERE is_flagged AND entity_type = 'user'
          AND week = (SELECT max(week) FROM tokenmaxxing_signals WHERE is_flagged AND entity_type = 'user')
        ORDER BY shortfall_z ASC, total_tokens DESC""").result_rows
    if flagged:
        who = "; ".join(f"{user} on {app}: {tokens / max(peer, 1):.0f}x the peer median tokens at "
                        f"{float(yield_ or 0):.1f} outcomes per 1M tokens (peers {float(peer_yield or 0):.1f})"
                        for _, user, app, tokens, peer, yield_, peer_yield in flagged[:3])
        answers.append(f"Tokenmaxxing: {len(flagged)} user(s) flagged in the week of {flagged[0][0]:%b %d} for high or "
                       f"rising tokens at a low outcome yield; the clearest — {who}.")
    overkill = client.query("""
        SELECT org_id, app, model, cheaper_model, estimated_saving_usd FROM model_overkill
        WHERE is_overkill ORDER BY estimated_saving_usd DESC LIMIT 1""").result_rows
    if overkill:
        org, app, model, cheaper, saving = overkill[0]
        answers.append(f"Model overkill: {org}'s {app} would save ${Decimal(saving):,.2f} by using {cheaper} "
                       f"instead of {model}, which succeeds as often there.")
    return answers
