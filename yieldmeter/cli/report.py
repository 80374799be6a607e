"""`yieldmeter report`: the HTML report (one self-contained file) from the warehouse."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import typer

from yieldmeter.cli.output import console, settings
from yieldmeter.report import DEFAULT_DAYS, build_report, save
from yieldmeter.warehouse import open_warehouse


def report(
    out: Path = typer.Option(None, "--out", "-o", help="Where to write it. Default: <state>/report.html."),
    days: int = typer.Option(DEFAULT_DAYS, "--days", min=1, help="Days the report covers, up to the newest data."),
    open_it: bool = typer.Option(False, "--open", help="Open it in the default browser afterwards."),
) -> None:
    """Write the HTML report: spend, cost per outcome, value versus volume, overkill, alerts."""
    config = settings()
    path = out or config.state_path / "report.html"
    with open_warehouse(config.warehouse_url) as client:
        built = build_report(client, days=days)
    written = save(built, path)
    console.print(f"[green]✓[/green] report for {built.period} written to {written} "
                  f"({written.stat().st_size / 1024:.0f} KB)")
    if built.needs_transform:
        console.print("Some sections need the dbt marts: run `yieldmeter transform`, then this again.")
    if open_it and not webbrowser.open(written.resolve().as_uri()):
        console.print("No browser to open it with here; open the file above.")
