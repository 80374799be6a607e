"""`yieldmeter budgets set | list | delete`: spend budgets on the budgets topic."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from yieldmeter.budgets import (
    Budget,
    BudgetError,
    delete as delete_budgets,
    describe_scope,
    load_budget_file,
    parse_budget,
    publish,
    read_budgets,
    read_controls,
)
from yieldmeter.cli.output import console, settings
from yieldmeter.contracts import ContractError, explain

app = typer.Typer(help="Spend budgets: what each org, team, user, app or API key may spend per day or month.",
                  no_args_is_help=True)

# Each option is the Budget field of the same name (--limit-usd is limit_usd).
FIELD_HELP = {name: info.description for name, info in Budget.model_fields.items()}


def _option(name: str):
    return typer.Option(None, f"--{name.replace('_', '-')}", help=FIELD_HELP[name], show_default=False)


@app.command("set")
def set_(
    file: Path = typer.Option(None, "--file", "-f", help="A YAML or JSON list of budgets (fields as below); all or nothing.",
                              exists=True, dir_okay=False, show_default=False),
    org_id: str = _option("org_id"),
    team: str = _option("team"),
    user_id: str = _option("user_id"),
    app_: str = typer.Option(None, "--app", help=FIELD_HELP["app"], show_default=False),
    api_key: str = _option("api_key"),
    kind: str = _option("kind"),
    outcome_type: str = _option("outcome_type"),
    period: str = _option("period"),
    time_zone: str = _option("time_zone"),
    limit_usd: str = _option("limit_usd"),
    warn_at_pct: str = _option("warn_at_pct"),
    action: str = _option("action"),
    throttle_per_minute: int = _option("throttle_per_minute"),
) -> None:
    """Publish a budget (from the options) or every budget of --file. The same scope, kind and
    period again replaces the budget; the controls job applies it within seconds."""
    fields = {"org_id": org_id, "team": team, "user_id": user_id, "app": app_, "api_key": api_key, "kind": kind,
              "outcome_type": outcome_type, "period": period, "time_zone": time_zone, "limit_usd": limit_usd,
              "warn_at_pct": warn_at_pct, "action": action, "throttle_per_minute": throttle_per_minute}
    given = {name: value for name, value in fields.items() if value is not None}
    if file is not None and given:
        raise typer.BadParameter("give either --file or the budget's options, not both")
    if file is not None:
        budgets = load_budget_file(file)
    else:
        try:
            budgets = [parse_budget(given)]
        except ContractError as error:
            raise BudgetError("invalid budget, nothing was published:\n  " + "\n  ".join(_named(error))) from None
    config = settings()
    with console.status(f"Publishing to {config.topic_budgets}…"):
        publish(budgets, config)
    for budget in budgets:
        console.print(f"[green]set[/green] {budget.budget_id}: {_summary(budget)}")


def _named(error: ContractError) -> list[str]:
    """explain()'s lines, each field followed by its option: "limit_usd (--limit-usd): ..."."""
    lines = []
    for line in explain(error).splitlines():
        field, sep, rest = line.partition(":")
        if field in Budget.model_fields:
            field = f"{field} (--{field.replace('_', '-')})"
        lines.append(field + sep + rest)
    return lines


def _summary(budget: Budget) -> str:
    if budget.kind == "cost_per_outcome":
        return (f"a successful {budget.outcome_type} may cost ${budget.limit_usd} "
                f"({describe_scope(budget.org_id, budget.team, None, budget.app, None)}, per month); notify")
    action = {"notify": "notify", "block": "block until the period ends",
              "throttle": f"throttle to {budget.throttle_per_minute} calls/minute"}[budget.action]
    return f"${budget.limit_usd} for {budget.describe()}; warn at {budget.warn_at_pct}%, then {action}"


@app.command("list")
def list_(
    org_id: str = typer.Option(None, "--org-id", help="Only this organisation's budgets."),
) -> None:
    """The budgets on the budgets topic, with each one's current control (state, spend, period end)."""
    config = settings()
    budgets, problems = read_budgets(config)
    controls = read_controls(config)
    table = Table(title=f"Budgets on {config.topic_budgets}, controls from {config.topic_controls}",
                  header_style="bold", title_justify="left")
    for name in ("budget_id", "limit", "warn at", "action", "state", "spent", "period end (UTC)", "reason"):
        table.add_column(name, justify="right" if name in ("limit", "spent") else "left")
    shown = 0
    for budget_id, budget in budgets.items():
        if org_id and budget.org_id != org_id:
            continue
        shown += 1
        control = controls.get(budget_id)
        if control is not None and not control.in_force():
            state, spent, end, reason = "ok", "$0.00", "", "a new period started; no call counted in it yet"
        elif control is not None:
            state, spent = control.state, f"${control.spent_usd:,.2f}"
            end, reason = control.period_end.strftime("%Y-%m-%d %H:%M"), control.reason
        else:
            kind_note = "judged by the dbt marts" if budget.kind == "cost_per_outcome" else "no control yet"
            state, spent, end, reason = "—", "", "", kind_note
        table.add_row(budget_id, f"${budget.limit_usd:,}", f"{budget.warn_at_pct}%", budget.action, state, spent,
                      end, reason)
    console.print(table)
    console.print(f"{shown} budget(s).")
    for problem in problems:
        console.print(f"[yellow]skipped[/yellow] {problem}")


@app.command("delete")
def delete(
    budget_ids: list[str] = typer.Argument(..., help="Budget ids, as `yieldmeter budgets list` shows them."),
) -> None:
    """Delete budgets: their controls are withdrawn (gateways stop applying them)."""
    config = settings()
    known, _ = read_budgets(config)
    unknown = [b for b in budget_ids if b not in known]
    if unknown:
        raise BudgetError(f"no budget {', '.join(unknown)} on {config.topic_budgets}; "
                          "`yieldmeter budgets list` shows the ids")
    delete_budgets(budget_ids, config)
    for budget_id in budget_ids:
        console.print(f"[green]deleted[/green] {budget_id}")
