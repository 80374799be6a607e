"""`yieldmeter sql`: run one query on the warehouse, embedded or server, read-only by default."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from enum import Enum

import typer
from rich.table import Table

from yieldmeter.cli.output import console, settings
from yieldmeter.errors import YieldmeterError
from yieldmeter.warehouse import open_warehouse, redact


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _plain(value):
    """JSON/CSV-safe value: Decimal stays exact (as a string), times as ISO-8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def sql(
    query: str = typer.Argument(..., help="One SQL statement; '-' reads it from standard input."),
    output: Format = typer.Option(Format.table, "--format", "-f", help="table, csv or json (one object per line)."),
    write: bool = typer.Option(False, "--write", help="Allow statements that change data or schema."),
) -> None:
    """Run a query on the warehouse. Read-only unless --write (ClickHouse's readonly setting)."""
    config = settings()
    text = sys.stdin.read() if query == "-" else query
    # readonly=2: no writes or DDL, but the client may still pass per-query settings.
    query_settings = {} if write else {"readonly": 2}
    url = config.warehouse_url
    with open_warehouse(url) as client:
        try:
            if write:
                client.command(text)
                console.print("OK")
                return
            result = client.query(text, settings=query_settings)
        except Exception as error:
            message = str(error).replace(url, redact(url))
            if "READONLY" in message:
                message += "\nThis statement changes data or schema; add --write if that is what you mean."
            raise YieldmeterError(message) from None
    rows = [[_plain(v) for v in row] for row in result.result_rows]
    if output is Format.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(result.column_names)
        writer.writerows([json.dumps(v) if isinstance(v, (list, dict)) else v for v in row] for row in rows)
    elif output is Format.json:
        for row in rows:
            sys.stdout.write(json.dumps(dict(zip(result.column_names, row))) + "\n")
    else:
        table = Table(*result.column_names, header_style="bold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)
        console.print(f"{len(rows)} row(s)", style="dim")
