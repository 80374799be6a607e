"""`yieldmeter prices load | list`: the price catalog on the prices topic."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from yieldmeter.cli.output import console, settings
from yieldmeter.contracts import PriceRecord
from yieldmeter.normalize import normalize_model
from yieldmeter.prices import Catalog, OrgDiscount, build_catalog, in_force, publish, read_topic

app = typer.Typer(help="The price catalog: genai-prices seed, your overrides and discounts.", no_args_is_help=True)

FILES = typer.Argument(None, help="Override files (.yaml/.yml or .csv); later files win on equal keys.",
                       exists=True, dir_okay=False, show_default=False)


@app.command("load")
def load(
    files: list[Path] = FILES,
    no_seed: bool = typer.Option(False, "--no-seed", help="Publish only the files, without the genai-prices seed."),
) -> None:
    """Publish the catalog (seed + FILES) to the prices topic. Loading twice changes nothing."""
    config = settings()
    catalog = build_catalog(files or [], seed=not no_seed)
    if catalog.seed:
        console.print("genai-prices seed: " + "\n  ".join(catalog.seed.lines()))
    with console.status(f"Publishing to {config.topic_prices}…"):
        sent = publish(catalog, config)
    users = sum(1 for r in catalog.prices.values() if r.source == "user")
    console.print(
        f"[green]Published {sent} records[/green] to {config.topic_prices} on {config.bootstrap_servers}: "
        f"{len(catalog.prices) - users} genai-prices prices, {users} user prices "
        f"({catalog.replaced} replacing a seed price), {len(catalog.discounts)} discounts."
    )


def _at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not an ISO-8601 time, e.g. 2026-11-22 or 2026-11-22T13:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # a bare date or time is UTC


def _usd(rate: Decimal | None) -> str:
    # None: the rate falls back (cache -> input, reasoning -> output), shown as a dash.
    return "—" if rate is None else f"{rate.normalize():f}"


def _matches(record: PriceRecord, provider: str | None, model: str | None) -> bool:
    if provider and record.provider != provider.lower():
        return False
    if not model:
        return True
    pattern = model.lower()
    if any(c in pattern for c in "*?["):
        return fnmatchcase(record.model, pattern)
    return record.model in (pattern, normalize_model(record.provider, pattern))


def _print(table: Table) -> None:
    # Piped or captured output is not squeezed into 80 columns: every row stays one greppable line.
    if console.is_terminal:
        console.print(table)
    else:
        Console(file=console.file, highlight=False, width=max(console.width, 200)).print(table)


def _price_table(records: list[PriceRecord], title: str) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    for name in ("provider", "model", "tier", "from"):
        table.add_column(name, no_wrap=True)
    for name in ("input", "cache read", "cache write", "output", "reasoning"):
        table.add_column(name, justify="right")
    table.add_column("above tier: input / output", justify="right")
    table.add_column("source")
    for r in records:
        above = (f"> {r.tier_threshold_input_tokens:,}: {_usd(r.input_above_per_mtok)} / {_usd(r.output_above_per_mtok)}"
                 if r.tier_threshold_input_tokens else "")
        table.add_row(
            r.provider, r.model, r.service_tier, r.effective_from.date().isoformat(),
            _usd(r.input_per_mtok), _usd(r.cache_read_per_mtok), _usd(r.cache_write_per_mtok),
            _usd(r.output_per_mtok), _usd(r.reasoning_per_mtok), above, r.source,
        )
    return table


def _discount_table(discounts: list[OrgDiscount]) -> Table:
    table = Table(title="Discounts in force", header_style="bold", title_justify="left")
    for name in ("org", "provider", "discount %", "from"):
        table.add_column(name)
    for d in discounts:
        table.add_row(d.org_id, d.provider or "* (all)", _usd(d.discount_pct), d.effective_from.date().isoformat())
    return table


@app.command("list")
def list_(
    files: list[Path] = FILES,
    provider: str | None = typer.Option(None, "--provider", "-p", help="Only this provider (as in events: openai, gcp.gemini …)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Only this model (any id the normaliser knows) or a glob: 'claude-*'."),
    tier: str | None = typer.Option(None, "--tier", help="Only this service tier (default, batch, flex, priority …)."),
    at: str | None = typer.Option(None, "--at", help="Show what is in force at this time (ISO-8601, UTC if no offset). Default: now."),
    from_files: bool = typer.Option(False, "--from-files", help="Read the seed and FILES instead of the prices topic."),
    no_seed: bool = typer.Option(False, "--no-seed", help="With --from-files: only FILES."),
) -> None:
    """Show the prices in force (USD per 1M tokens), read from the prices topic."""
    moment = _at(at)
    if files and not from_files:
        raise typer.BadParameter("FILES are read only with --from-files; without it the prices topic is read")
    if from_files:
        catalog, source = build_catalog(files or [], seed=not no_seed), "the seed and files"
    else:
        config = settings()
        contents = read_topic(config)
        catalog, source = contents.catalog, f"{config.topic_prices} ({contents.messages} messages read)"
        for problem in contents.problems:
            console.print(f"[yellow]skipped[/yellow] {problem}")
    _show(catalog, moment, source, provider, model, tier)


def _show(catalog: Catalog, moment: datetime, source: str, provider: str | None, model: str | None, tier: str | None) -> None:
    current = [r for r in in_force(catalog.prices.values(), moment)
               if _matches(r, provider, model) and (tier is None or r.service_tier == tier.lower())]
    when = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    _print(_price_table(current, f"Prices in force at {when}, USD per 1M tokens, from {source}"))
    console.print(f"{len(current)} price(s) shown; — = falls back (cache → input rate, reasoning → output rate).")
    discounts = [d for d in in_force(catalog.discounts.values(), moment) if not provider or d.provider in (None, provider.lower())]
    if discounts:
        _print(_discount_table(discounts))
