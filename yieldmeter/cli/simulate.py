"""`yieldmeter simulate`: a realistic workload with planted behaviours, to files or to Kafka."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table

from yieldmeter.cli.output import console, settings
from yieldmeter.errors import YieldmeterError
from yieldmeter.simulate import DEFAULT_DAYS, DEFAULT_EVENTS, DEFAULT_START, FileSink, KafkaSink, SimulationOptions
from yieldmeter.simulate import simulate as run_simulation

FUTURE_TOLERANCE = timedelta(minutes=5)  # contracts.MAX_FUTURE: later events are rejected as clock errors


class SimulateError(YieldmeterError):
    """Options that cannot work together."""


def _start(value: str, days: int) -> datetime:
    if value == "now":  # the span ends at today's midnight UTC, so no event lies in the future
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=days)
    try:
        start = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SimulateError(f"--start {value!r}: give a date such as 2026-11-02, or 'now'") from None
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    if start != start.replace(hour=0, minute=0, second=0, microsecond=0):
        raise SimulateError(f"--start {value!r}: the span starts at midnight UTC; give a date such as 2026-11-02")
    return start


def simulate(
    events: int = typer.Option(DEFAULT_EVENTS, "--events", "-n", min=100,
                               help="Approximate number of usage events (retries included)."),
    days: int = typer.Option(DEFAULT_DAYS, "--days", min=1, max=366, help="Length of the time span in days."),
    seed: int = typer.Option(42, "--seed", help="Same seed and options: byte-identical output."),
    start: str = typer.Option(DEFAULT_START.date().isoformat(), "--start",
                              help="First day (midnight UTC), or 'now': the span that ends today at 00:00 UTC."),
    out: Path | None = typer.Option(None, "--out", help="Folder for usage.jsonl, outcomes.jsonl and manifest.json "
                                    "[default: <state_dir>/simulate]."),
    to_kafka: bool = typer.Option(False, "--to-kafka", help="Produce to the events and outcomes topics instead."),
    manifest: Path | None = typer.Option(None, "--manifest", help="With --to-kafka: where the manifest goes "
                                         "[default: <state_dir>/simulate/manifest.json]."),
) -> None:
    """Generate a synthetic LLM workload with planted tokenmaxxers, overkill, spikes and bad input,
    and a manifest of the ground truth."""
    if out is not None and to_kafka:
        raise SimulateError("--out writes files and --to-kafka produces to Kafka: choose one "
                            "(with --to-kafka, --manifest says where the manifest goes)")
    if manifest is not None and not to_kafka:
        raise SimulateError("--manifest goes with --to-kafka; with files the manifest is <out>/manifest.json")
    try:
        options = SimulationOptions(events=events, days=days, seed=seed, start=_start(start, days))
    except ValueError as error:
        raise SimulateError(str(error)) from None
    config = settings()
    late = options.end - (datetime.now(UTC) + FUTURE_TOLERANCE)
    if late > timedelta(0):
        message = (f"the span ends {options.end:%Y-%m-%d}, in the future: the pipeline rejects events more than "
                   "5 minutes ahead of its clock; use an earlier --start, fewer --days, or --start now")
        if to_kafka:
            raise SimulateError(message)
        console.print(f"[yellow]warning:[/yellow] {message}")

    t0 = time.perf_counter()
    if to_kafka:
        from yieldmeter.topics import ensure_topics

        try:
            ensure_topics(config)
        except Exception as error:  # the admin client's KafkaException: say where and what to do
            raise SimulateError(f"cannot reach Kafka at {config.bootstrap_servers} ({error}); "
                                "start it with `yieldmeter up` or set YIELDMETER_KAFKA_BOOTSTRAP") from None
        path = manifest or config.state_path / "simulate" / "manifest.json"
        sink = KafkaSink(config, manifest_path=path)
        where = f"topics {config.topic_events} and {config.topic_outcomes} on {config.bootstrap_servers}"
    else:
        folder = out or config.state_path / "simulate"
        path = folder / "manifest.json"
        sink = FileSink(folder)
        where = f"{folder}/usage.jsonl and outcomes.jsonl"
    with console.status("Generating…"):
        result = run_simulation(options, sink)
    seconds = time.perf_counter() - t0
    _summary(result, where, path, seconds)


def _summary(m: dict, where: str, manifest_path: Path, seconds: float) -> None:
    totals, planted = m["totals"], m["planted"]
    console.print(f"[green]✓[/green] {totals['usage_lines']:,} usage lines and {totals['outcomes']:,} outcomes "
                  f"({m['options']['start'][:10]} to {m['options']['end'][:10]}, seed {m['seed']}) to {where} "
                  f"in {seconds:.1f}s ({totals['usage_lines'] / max(seconds, 1e-9):,.0f} events/s)")
    console.print(f"  {totals['valid_usage_events']:,} valid calls in {totals['sessions']:,} sessions; "
                  f"{m['population']['users']} users in {len(m['population']['orgs'])} orgs")
    table = Table(title="Planted (ground truth in the manifest)", title_justify="left")
    table.add_column("behaviour")
    table.add_column("where")
    table.add_column("evidence")
    for t in planted["tokenmaxxers"]:
        weekly = " → ".join(f"{w['tokens'] / 1e6:,.1f}M" for w in t["weekly"])
        table.add_row("tokenmaxxer", f"{t['org_id']}/{t['team']}/{t['user_id']} on {t['app']}",
                      f"{_ratio(t)} tokens/success vs peers; tokens by week {weekly}; "
                      f"successes by week {' → '.join(str(w['successes']) for w in t['weekly'])}")
    for h in planted["honest_heavy_users"]:
        table.add_row("honest heavy (not a flag)", f"{h['org_id']}/{h['team']}/{h['user_id']} on {h['app']}",
                      f"{h['tokens'] / max(h['peer_median_tokens'] or 1, 1):.1f}x peer tokens, "
                      f"{_ratio(h)} tokens/success vs peers")
    for o in planted["model_overkill"]:
        exp, cheap = o["expensive_model"], o["cheaper"]
        table.add_row("model overkill", f"{o['org_id']}/{o['team'] or '*'} on {o['app']}",
                      f"{exp['catalogue_id']} succeeds {_pct(exp['success_rate_per_session'])} of sessions, "
                      f"{' / '.join(c['catalogue_id'] for c in o['cheaper_models'])} "
                      f"{_pct(cheap['success_rate_per_session'])}")
    s = planted["spend_spike"]
    table.add_row("spend spike", f"{s['org_id']}/{s['team']} on {s['app']}",
                  f"{s['hour_start']}: {s['spike_calls']} extra calls on ~{s['expected_normal_calls']:.0f} normal")
    idle = planted["idle_sessions"]
    table.add_row("idle sessions", "all apps", f"{idle['idle']:,} of {idle['sessions']:,} ({_pct(idle['share'])}): "
                  + ", ".join(f"{app} {_pct(share)}" for app, share in idle["per_app"].items()))
    u = planted["unpriced_model"]
    table.add_row("unpriced model", f"{u['org_id']} on {u['app']}", f"{u['provider']}/{u['model']}: "
                  f"{u['usage_events']} calls")
    bad = planted["malformed"]
    table.add_row("malformed lines", "usage stream",
                  f"{bad['count']}: " + ", ".join(f"{k} {n}" for k, n in bad["by_kind"].items()))
    table.add_row("duplicates", "usage stream", f"{planted['duplicates']['count']} re-delivered events")
    table.add_row("late events", "usage stream", f"{planted['late']['count']} arrive 20 min to 6 h after later events")
    console.print(table)
    console.print(f"Manifest: {manifest_path}")


def _ratio(entry: dict) -> str:
    mine, peers = entry["tokens_per_success"], entry["peer_median_tokens_per_success"]
    return f"{mine / peers:.1f}x" if mine and peers else "n/a"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
