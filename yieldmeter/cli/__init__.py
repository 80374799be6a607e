"""The `yieldmeter` command. One module per command group; this file only wires them."""

from __future__ import annotations

import sys

import typer

# One import per line: each command module is added by its own small edit.
from yieldmeter.cli import alerts
from yieldmeter.cli import budgets
from yieldmeter.cli import demo
from yieldmeter.cli import flink
from yieldmeter.cli import otlp
from yieldmeter.cli import prices
from yieldmeter.cli import produce
from yieldmeter.cli import report
from yieldmeter.cli import run
from yieldmeter.cli import services
from yieldmeter.cli import simulate
from yieldmeter.cli import sql
from yieldmeter.cli import transform
from yieldmeter.cli import warehouse
from yieldmeter.cli.output import console
from yieldmeter.errors import YieldmeterError

app = typer.Typer(
    name="yieldmeter",
    help="Value against volume for LLM token spend: Kafka, PyFlink, ClickHouse and dbt.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.command()(services.up)
app.command()(services.down)
app.command()(services.status)
app.command()(services.topics)
app.command()(warehouse.migrate)
app.command()(sql.sql)
app.command()(warehouse.ingest)
app.command()(warehouse.check)
app.add_typer(flink.app, name="flink")
app.add_typer(prices.app, name="prices")
app.add_typer(budgets.app, name="budgets")
app.command()(demo.demo)
app.command()(run.run)
app.command()(otlp.otlp)
app.command()(produce.produce)
app.command()(produce.normalize)
app.command()(alerts.alerts)
app.command()(simulate.simulate)
app.command()(report.report)
app.command(context_settings=transform.CONTEXT)(transform.transform)
app.command(context_settings=transform.CONTEXT)(transform.docs)


def main() -> None:
    try:
        app()
    except YieldmeterError as error:
        console.print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(1)
