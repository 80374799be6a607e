"""`yieldmeter alerts`: evaluate the alert rules now (or as of --at, to replay), record incidents,
deliver to Slack."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import typer

from yieldmeter.alerts import PLANNED, load_config
from yieldmeter.alerts.engine import cycle, evaluate, plan
from yieldmeter.alerts.model import format_value, utc
from yieldmeter.alerts.store import IncidentStore
from yieldmeter.cli.output import console, settings
from yieldmeter.warehouse import open_warehouse

DEFAULT_CONFIG = Path("alerts.yaml")


def alerts(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would fire; send nothing, store nothing."),
    at: datetime = typer.Option(
        None, "--at", formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"],
        help="Evaluate as of this time (ISO, UTC unless it has an offset), to replay a past hour. Default: now.",
    ),
    config_file: Path = typer.Option(
        None, "--config", envvar="YIELDMETER_ALERTS_CONFIG",
        help="Alerts YAML (thresholds, overrides, routes). Default: ./alerts.yaml if present, else built-in "
        "thresholds. Example: infra/alerts.example.yaml.",
    ),
) -> None:
    """Evaluate the alert rules on the warehouse, update incidents and deliver pending notices to Slack."""
    config = settings()
    path = config_file or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    rules = load_config(path, default_webhook=config.slack_webhook_url)
    now = datetime.now(timezone.utc) if at is None else utc(at)
    with open_warehouse(config.warehouse_url) as client:
        if dry_run:
            store = IncidentStore(client)
            evaluation = evaluate(client, rules, now)
            open_incidents = {} if store.missing_tables() else store.open_incidents()
            decisions = plan(evaluation, open_incidents, rules, now)
        else:
            report = cycle(client, rules, now, console=console)
            evaluation, decisions = report.evaluation, report.decisions

    console.print(f"Alert rules from {rules.source}, evaluated at {now:%Y-%m-%d %H:%M} UTC.")
    for name, why in evaluation.skipped.items():
        console.print(f"  [yellow]skipped[/yellow] {name}: {why}")
    for name, error in evaluation.failed.items():
        console.print(f"  [red]failed[/red] {name}: {error}")
    for d in decisions:  # one line each: the output stays greppable
        source = d.finding or d.previous
        verb = (f"would be {d.event.value}" if dry_run else d.event.value) if d.event else "suppressed (cooldown)"
        console.print(
            f"  {verb:<22} {source.severity.value:<8} {d.key}  value {format_value(source.value, source.unit)}, "
            f"baseline {format_value(source.baseline, source.unit)}, "
            f"threshold {format_value(source.threshold, source.unit)}"
        )
    if not decisions:
        console.print("Nothing fires.")
    if PLANNED:
        console.print(f"[dim]Not yet available: {', '.join(PLANNED)}.[/dim]")
    if dry_run:
        console.print("Dry run: nothing was stored or sent.")
    else:
        console.print(
            f"{len(report.notices)} notice(s) recorded; {report.delivered} delivered to Slack, "
            f"{report.printed} printed (no webhook), {len(report.failed)} failed (kept, retried next cycle)"
            + (f", {report.waiting} waiting behind a failing route" if report.waiting else "") + "."
        )
        for failure in report.failed:
            console.print(f"  [red]delivery failed[/red] {failure}")
    if evaluation.failed:
        raise typer.Exit(1)
