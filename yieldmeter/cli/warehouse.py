"""`yieldmeter migrate`: apply the numbered ClickHouse migrations."""

from __future__ import annotations

import typer

from yieldmeter.cli.output import console, settings
from yieldmeter.warehouse import migrate as apply_migrations
from yieldmeter.warehouse import open_warehouse, redact, rollback


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
    for migration in done:
        console.print(f"  applied {migration.version:04d}_{migration.name}")
    console.print(f"{len(done)} migration(s) applied; the warehouse at {redact(config.warehouse_url)} is current.")
