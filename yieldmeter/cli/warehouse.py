"""`yieldmeter migrate | ingest | check`: the warehouse's schema, its intake and its books."""

from __future__ import annotations

import signal

import typer
from rich.table import Table

from yieldmeter.check import reconcile
from yieldmeter.cli.output import console, settings
from yieldmeter.ingest import WarehouseIngest
from yieldmeter.warehouse import apply_retention, open_warehouse, redact, rollback
from yieldmeter.warehouse import migrate as apply_migrations


def migrate(
    down_to: int = typer.Option(None, "--down-to", help="Roll back every migration above this version."),
) -> None:
    """Apply the ClickHouse migrations that have not run yet (running twice changes nothing)."""
    config = settings()
    with open_warehouse(config.warehouse_url) as client:
        if down_to is not None:
            done = rollback(client, down_to)
            console.print(f"Rolled back {len(done)} migration(s) on {redact(config.warehouse_url)}.")
            return
        done = apply_migrations(client)
        apply_retention(client, config.retention_days)
    for migration in done:
        console.print(f"  applied {migration.version:04d}_{migration.name}")
    retention = f"{config.retention_days} days" if config.retention_days else "forever"
    console.print(f"{len(done)} migration(s) applied; the warehouse at {redact(config.warehouse_url)} is current "
                  f"(retention: {retention}).")


def ingest(
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Stop once the topics' current ends are in."),
) -> None:
    """Consume the pipeline topics into the warehouse (Ctrl-C stops cleanly)."""
    config = settings()
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    with open_warehouse(config.warehouse_url) as client:
        apply_migrations(client)
        intake = WarehouseIngest(config, client)
        try:
            with console.status("Ingesting…"):
                stats = intake.run(until_caught_up=until_caught_up, should_stop=lambda: stopping)
        except KeyboardInterrupt:
            stats = None
        finally:
            intake.close()
    if stats:
        tables = ", ".join(f"{t} {n}" for t, n in sorted(stats.inserted.items())) or "nothing new"
        console.print(f"{stats.records} records in {stats.seconds:.1f}s ({stats.per_second:,.0f}/s): {tables}; "
                      f"{stats.skipped_redelivered} re-delivered skipped; {stats.rejected} rejected to dead_letters.")


def check() -> None:
    """Reconcile the topics with the warehouse: counts and cost totals, and exactly what differs."""
    config = settings()
    with open_warehouse(config.warehouse_url) as client:
        with console.status("Reading the topics…"):
            results = reconcile(config, client)
    table = Table("topic", "table", "in topic", "in table", "dead letters", "cost in topic", "cost in table", "ok",
                  header_style="bold")
    for r in results:
        table.add_row(r.topic, r.table, str(r.in_topic), str(r.in_table), str(r.in_dead_letters),
                      "" if r.cost_in_topic is None else f"{r.cost_in_topic:.9f}",
                      "" if r.cost_in_table is None else f"{r.cost_in_table:.9f}",
                      "[green]yes[/green]" if r.ok else "[red]no[/red]")
    console.print(table)
    problems = [line for r in results for line in r.differences()]
    for line in problems:
        console.print(f"[red]✗[/red] {line}")
    if problems:
        raise typer.Exit(1)
    console.print("[green]✓ every record is in the warehouse exactly once; cost totals agree.[/green]")
