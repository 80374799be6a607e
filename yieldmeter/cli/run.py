"""`yieldmeter run`: the main job, with a live status line."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.live import Live

from yieldmeter.cli.output import console, settings
from yieldmeter.otlp import serving
from yieldmeter.runner import RunState, run as run_pipeline


def status_line(state: RunState) -> str:
    lag = ", ".join(f"{topic} {n:,}" for topic, n in sorted(state.lag.items()) if n) or "none"
    return (f"[bold]job[/bold] {state.job} · [bold]in[/bold] {state.ingest.records:,} records "
            f"({state.events_per_second:,.0f}/s) · [bold]lag[/bold] {lag} · [bold]calls[/bold] {state.calls:,} · "
            f"[bold]sessions closed[/bold] {state.sessions:,} · [bold]spend[/bold] ${state.spend_usd:,.2f}"
            + (f" · {state.last_hook}" if state.last_hook else ""))


def one_line(message: str) -> str:
    """A dbt message on one line of the status, without dbt's macro trace."""
    return " ".join(message.split()).split(" > in macro")[0][:240]


def why_dbt_could_not_run(error: Exception) -> str:
    """Why a build could not run, on one line: for a TransformError, what dbt raised (a project it
    cannot parse) or its own message (a warehouse not migrated); a WarehouseError's (a server it
    cannot reach)."""
    return one_line(str(error.__cause__ or error))


def first_failure(result) -> str:
    """The first failed node of a dbt run and why, on one line: dbt's message after its header
    line ("Compilation Error in model ..."), which names the node again."""
    failures = result.failures()
    if not failures:
        return "see dbt's log"
    node, _, message = failures[0].partition(": ")
    lines = message.splitlines()
    return f"{node}: {one_line(' '.join(lines[1:] or lines))}"


def transform_hook(config, every_s: float):
    """dbt build on the warehouse every ``every_s`` seconds, and once more when a bounded run ends.
    Incremental (dbt/README.md): each build rebuilds what was ingested since the last one, and
    leaves out what would cost the whole history again (SCHEDULED_BUILD): `yieldmeter transform`
    runs those tests. After a build that succeeded, the views are left out too until one fails
    (transform.ScheduledBuilds): they cannot have changed under the running process."""
    import time

    from yieldmeter.transform import ScheduledBuilds, TransformError, transform
    from yieldmeter.warehouse import WarehouseError

    last = [time.monotonic()]
    parsed = [False]
    scheduled_build = ScheduledBuilds(config, ["--quiet"])

    def hook(client, state):
        if not parsed[0]:
            # parse the project before the first build is due, not in it (a full parse: 1-4 s on
            # 2 cores, benchmarks/bench_dbt.py), and show a project dbt cannot parse at once
            parsed[0] = True
            try:
                why = "" if transform(config, ["parse", "--quiet"], keep_manifest=True).success else "see dbt's log"
            except TransformError as error:
                why = why_dbt_could_not_run(error)
            if why:
                state.dbt_failure = why
                return f"dbt parse FAILED: {why} (`yieldmeter transform parse` shows all)"
        if state.job != "finished" and time.monotonic() - last[0] < every_s:
            return None
        last[0] = time.monotonic()
        try:
            result = scheduled_build()
        except (TransformError, WarehouseError) as error:  # a server it cannot reach: WarehouseError
            # the pipeline goes on storing what arrives, and the next build tries again
            state.dbt_failure = why_dbt_could_not_run(error)
            return f"dbt build FAILED: {state.dbt_failure} (`yieldmeter transform` shows all)"
        rebuilt = f" (rebuilt from scratch: {result.full_rebuild})" if result.full_rebuild else ""
        state.dbt_failure = "" if result.success else first_failure(result)
        if result.success:
            return f"dbt build ok in {result.seconds:.0f}s{rebuilt}"
        return f"dbt build FAILED in {result.seconds:.0f}s{rebuilt}: {state.dbt_failure} (`yieldmeter transform` shows all)"

    return hook


def alerts_hook(config_file: Path | None, webhook):
    from yieldmeter.alerts import load_config
    from yieldmeter.alerts.engine import cycle

    rules = load_config(config_file, default_webhook=webhook)

    def hook(client, state):
        report = cycle(client, rules, datetime.now(UTC), console=console)
        return f"alerts: {len(report.notices)} new, {report.delivered} delivered"

    return hook


def run(
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Process what the topics hold now, then stop."),
    cycle_seconds: float = typer.Option(30.0, "--cycle", help="Seconds between cycles (status, dbt, alerts)."),
    alerts_config: Path = typer.Option(None, "--alerts-config", envvar="YIELDMETER_ALERTS_CONFIG",
                                       help="Alerts YAML; default: built-in thresholds."),
    no_alerts: bool = typer.Option(False, "--no-alerts", help="Do not evaluate alerts on each cycle."),
    dbt_every: float = typer.Option(300.0, "--dbt-every", help="Seconds between dbt builds (0: never)."),
) -> None:
    """Run the pipeline: Kafka, the Flink job, the warehouse ingest, dbt and alerts each cycle."""
    config = settings()
    hooks = ((transform_hook(config, dbt_every),) if dbt_every else ()) + (
        () if no_alerts else (alerts_hook(alerts_config, config.slack_webhook_url),))
    with serving(config) if config.otlp_enabled else nullcontext(), \
            Live(console=console, refresh_per_second=2, transient=False) as live:
        state = run_pipeline(config, until_caught_up=until_caught_up, cycle_s=cycle_seconds, hooks=hooks,
                             on_update=lambda s: live.update(status_line(s)))
        live.update(status_line(state))
    console.print(f"Stopped after {state.ingest.records:,} records; {state.calls:,} calls and "
                  f"{state.sessions:,} sessions in the warehouse, ${state.spend_usd:,.2f} spend.")
    if until_caught_up and state.dbt_failure:  # a script running a bounded run learns it from the exit code
        console.print(f"[red]Its last dbt build failed[/red]: {state.dbt_failure}")
        raise typer.Exit(1)
