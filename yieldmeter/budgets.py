"""Budgets and controls: the two records of spend control, and the topics that carry them.

- :class:`Budget`   one budget of one scope   topic usage.budgets  (compacted, key = ``Budget.budget_id``)
- :class:`Control`  the decision for a budget  topic usage.controls (compacted, same key; written by
  the controls job, jobs/controls.py)

A budget caps what a **scope** may spend per **period**: an organisation, or within it any
combination of a team, a user, an app and an API key (an unset field matches every call), per
day or per month in the budget's time zone. At ``warn_at_pct`` of the limit the scope is in
state ``warn``; at the limit its action applies: ``notify`` (stay ``warn``: the alerts say so),
``throttle`` (gateways admit ``throttle_per_minute`` calls a minute) or ``block`` (gateways
refuse its calls until the period ends). A ``cost_per_outcome`` budget caps what one successful
outcome may cost; the dbt marts judge it after the outcomes arrive, so its action is ``notify``.

Budgets are data: ``yieldmeter budgets set | list | delete`` writes and reads the topic, the
controls job and the warehouse (table ``budgets``, dbt's budget marts) read the same records.
The wire rules are those of every yieldmeter record (schemas/README.md): JSON, unknown fields
rejected, money as decimal strings. docs/controls.md describes both topics for gateway authors.

Regenerate the JSON Schemas after changing a model: ``python -m yieldmeter.budgets``.
"""

from __future__ import annotations

import sys
import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from yieldmeter import contracts
from yieldmeter.contracts import (
    SCHEMA_VERSION,
    ContractError,
    Name,
    OutcomeType,
    Percent,
    Usd,
    explain,
    to_json_bytes,
)
from yieldmeter.errors import YieldmeterError

SCOPE_FIELDS = ("team", "user_id", "app", "api_key")
"""The fields that narrow a budget's scope within its organisation, in budget_id order."""
API_KEY_ATTRIBUTE = "api_key"
"""The UsageEvent attribute that names the API key of a call (an alias or hash, never the secret)."""


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _time_zone(value: str) -> str:
    if value not in _known_zones():
        raise PydanticCustomError(
            "time_zone", "must be an IANA time zone such as UTC, Europe/Paris or America/New_York"
        )
    return value


TimeZone = Annotated[str, AfterValidator(_time_zone)]
Limit = Annotated[Usd, Field(gt=0)]


class Budget(BaseModel):
    """A spend cap (or cost-per-outcome ceiling) of one scope per day or month."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this contract.")
    kind: Literal["spend", "cost_per_outcome"] = Field(
        "spend", description="spend: the scope's spend in the period; cost_per_outcome: its spend per successful outcome."
    )
    org_id: Name = Field(description="Organisation, as UsageEvent.org_id.")
    team: Name | None = Field(None, description="Only this team's calls (as UsageEvent.team); null = every team.")
    user_id: Name | None = Field(None, description="Only this user's calls (as UsageEvent.user_id); null = every user.")
    app: Name | None = Field(None, validate_default=True, description="Only this app's calls (as UsageEvent.app); null = every app.")
    api_key: Name | None = Field(
        None, description="Only calls with this API key (UsageEvent.attributes['api_key']: the key's alias or hash, "
        "never the secret); null = every key."
    )
    outcome_type: OutcomeType | None = Field(
        None, validate_default=True, description="cost_per_outcome: the outcome whose successes the spend is divided by (as OutcomeEvent)."
    )
    period: Literal["day", "month"] = Field("month", description="The spend resets at the start of each period.")
    time_zone: TimeZone = Field(
        "UTC", description="IANA time zone whose midnights (or first days of the month) start the periods."
    )
    limit_usd: Limit = Field(
        description="USD, as a string: the most the scope may spend per period (spend), or one successful "
        "outcome may cost (cost_per_outcome); after discounts, like cost_usd."
    )
    warn_at_pct: Percent = Field(Decimal(80), description="State warn from this percent of the limit.")
    action: Literal["notify", "throttle", "block"] = Field(
        "notify", description="At the limit: notify (alerts only), throttle (gateways slow the scope down) "
        "or block (gateways refuse its calls until the period ends)."
    )
    throttle_per_minute: Annotated[int, Field(strict=True, ge=1, le=100_000)] | None = Field(
        None, validate_default=True, description="throttle: calls a minute each gateway replica admits for the scope over its limit (default 6)."
    )

    # Cross-field rules as field validators (fields are validated in order, so info.data holds
    # the earlier ones): each error then names the field to fix, not the whole budget.
    @field_validator("app", "user_id", "api_key", "outcome_type", "period", "action")
    @classmethod
    def _cost_per_outcome(cls, value: Any, info: ValidationInfo) -> Any:
        kind, field = info.data.get("kind"), info.field_name
        if kind == "spend" and field == "outcome_type" and value is not None:
            raise PydanticCustomError("spend_outcome", "only a cost_per_outcome budget has an outcome_type")
        if kind != "cost_per_outcome":
            return value
        if field in ("app", "outcome_type") and value is None:
            raise PydanticCustomError("cost_per_outcome", "a cost_per_outcome budget needs one (its outcomes come from one app)")
        if field in ("user_id", "api_key") and value is not None:
            raise PydanticCustomError("cost_per_outcome", "a cost_per_outcome budget is set per org, team and app only")
        if field == "period" and value != "month":
            raise PydanticCustomError("cost_per_outcome", "a cost_per_outcome budget is judged per month")
        if field == "action" and value != "notify":
            raise PydanticCustomError(
                "cost_per_outcome", "a cost_per_outcome budget can only notify: the dbt marts judge it once the "
                "outcomes arrive, after the calls were made"
            )
        return value

    @field_validator("throttle_per_minute")
    @classmethod
    def _throttle(cls, value: int | None, info: ValidationInfo) -> int | None:
        action = info.data.get("action")
        if value is not None and action is not None and action != "throttle":
            raise PydanticCustomError("throttle", "only a budget with action throttle has a throttle_per_minute")
        return 6 if value is None and action == "throttle" else value

    @property
    def scope(self) -> str:
        """Who the budget caps: ``acme`` or ``acme/team=support/app=bot`` (values %-escaped)."""
        parts = [_escape(self.org_id)]
        parts += [f"{name}={_escape(value)}" for name in SCOPE_FIELDS if (value := getattr(self, name)) is not None]
        return "/".join(parts)

    @property
    def budget_id(self) -> str:
        """The Kafka key on usage.budgets and usage.controls: kind, scope, outcome type, period."""
        outcome = f"/{self.outcome_type}" if self.outcome_type else ""
        return f"{self.kind}/{self.scope}{outcome}/{self.period}"

    def describe(self) -> str:
        """The scope and period in words, for messages: "team support of acme, per month (UTC)"."""
        return f"{describe_scope(self.org_id, self.team, self.user_id, self.app, self.api_key)}, per {self.period}" + (
            f" ({self.time_zone})" if self.time_zone != "UTC" else "")


def _escape(value: str) -> str:
    return quote(value, safe=" @:.,+-_~*")  # '/', '=' and '%' escaped: the key stays parseable


def describe_scope(org_id: str, team: str | None, user_id: str | None, app: str | None, api_key: str | None) -> str:
    narrowed = [f"{label} {value}" for label, value in
                (("team", team), ("user", user_id), ("app", app), ("API key", api_key)) if value is not None]
    return (", ".join(narrowed) + f" of {org_id}") if narrowed else f"org {org_id}"


State = Literal["ok", "warn", "throttle", "block"]


class Control(BaseModel):
    """The controls job's decision for one spend budget in its current period (usage.controls).

    Money is exact: decimal strings with the job's full precision (21 decimals), read with
    ``Decimal``. A control applies until ``period_end``; after it the scope's spend starts again
    from zero, whether or not a newer record has arrived yet (:meth:`in_force`).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)  # a newer job may add fields: readers skip them

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this contract.")
    budget_id: str = Field(description="The budget's key (Budget.budget_id), also this record's Kafka key.")
    org_id: str
    team: str | None = None
    user_id: str | None = None
    app: str | None = None
    api_key: str | None = None
    period: Literal["day", "month"]
    time_zone: str
    period_start: datetime = Field(description="Start of the period the spend counts in (UTC).")
    period_end: datetime = Field(description="End of that period, exclusive (UTC): the control expires then.")
    state: State = Field(description="ok, warn (past warn_at_pct, or over the limit of a notify budget), throttle or block.")
    action: Literal["notify", "throttle", "block"]
    limit_usd: Decimal
    spent_usd: Decimal = Field(description="Spend of the scope in the period: every priced call, exactly once.")
    remaining_usd: Decimal = Field(description="limit_usd - spent_usd; negative when over.")
    warn_at_pct: Decimal
    throttle_per_minute: int | None = None
    calls: int = Field(description="Calls of the scope in the period, priced or not.")
    unpriced_calls: int = Field(description="Of those, calls without a known price: not in spent_usd.")
    reason: str = Field(description="The decision in words, with the unpriced calls it could not count.")
    updated_at: datetime = Field(description="When the job computed this record (UTC).")

    def matches(self, org_id: str, team: str | None, user_id: str | None, app: str | None, api_key: str | None) -> bool:
        """Whether a call of this org/team/user/app/key falls in the control's scope."""
        return org_id == self.org_id and all(
            mine is None or mine == theirs
            for mine, theirs in ((self.team, team), (self.user_id, user_id), (self.app, app), (self.api_key, api_key))
        )

    def in_force(self, now: datetime | None = None) -> bool:
        """False once the period has ended: the scope then starts the next period at zero."""
        return (now or datetime.now(UTC)) < self.period_end


def period_bounds(at: datetime, time_zone: str, period: str) -> tuple[datetime, datetime]:
    """The [start, end) in UTC of the day or month that holds ``at`` in ``time_zone``.

    The reference of the controls job's period arithmetic (jobs/sql/controls.sql, tested to
    agree): local midnights, so a day is 23 or 25 hours long across a DST change.
    """
    zone = zoneinfo.ZoneInfo(time_zone)
    local = at.astimezone(zone)
    if period == "day":
        start = datetime(local.year, local.month, local.day, tzinfo=zone)
        following = start.date() + timedelta(days=1)
        end = datetime(following.year, following.month, following.day, tzinfo=zone)
    else:
        start = datetime(local.year, local.month, 1, tzinfo=zone)
        end = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


# --- parsing and files -----------------------------------------------------------------------


class BudgetError(YieldmeterError):
    """A budget breaks the contract or cannot be published; the message names the field."""


def parse_budget(data: bytes | str | dict) -> Budget:
    """Validate one budget from JSON (or a dict); raise ContractError naming each field."""
    try:
        if isinstance(data, dict):
            return Budget.model_validate(data)
        return Budget.model_validate_json(data)
    except ValidationError as error:
        raise ContractError(error, Budget) from error


def parse_control(data: bytes | str) -> Control:
    try:
        return Control.model_validate_json(data)
    except ValidationError as error:
        raise ContractError(error, Control) from error


class _ExactLoader(yaml.SafeLoader):
    """YAML with exact numbers: 12.50 becomes Decimal('12.50'), never a float."""


_ExactLoader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node).replace("_", ""))
)


def load_budget_file(path: Path) -> list[Budget]:
    """Budgets from a YAML or JSON file: a list of budgets, or ``budgets: [...]``. Every problem
    of every budget is reported at once (``file[2].limit_usd: ...``); nothing is returned unless
    all are valid."""
    try:
        data = yaml.load(path.read_text(), Loader=_ExactLoader)  # JSON is YAML
    except FileNotFoundError:
        raise BudgetError(f"{path}: no such file") from None
    except yaml.YAMLError as error:
        raise BudgetError(f"{path}: not valid YAML or JSON: {error}") from None
    if isinstance(data, dict) and set(data) == {"budgets"}:
        data = data["budgets"]
    if not isinstance(data, list):
        raise BudgetError(f"{path}: expected a list of budgets (or `budgets:` holding one)")
    budgets, problems = [], []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            problems.append(f"{path}[{index}]: a budget is a mapping of fields (org_id, limit_usd, ...)")
            continue
        try:
            budgets.append(parse_budget(item))
        except ContractError as error:
            problems += [f"{path}[{index}].{line}" for line in explain(error).splitlines()]
    ids = [b.budget_id for b in budgets]
    problems += [f"{path}: budget {i} appears twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    if problems:
        raise BudgetError("invalid budgets, nothing was published:\n  " + "\n  ".join(problems))
    return budgets


# --- the topics ------------------------------------------------------------------------------


def _send(settings: Any, messages: list[tuple[str, str, bytes | None]], timeout_s: float = 30) -> None:
    """(topic key, Kafka key, value) messages, every one delivered or an error (run the command
    again: same keys, same result)."""
    from yieldmeter.topics import ensure_topic, produce_all

    topics = {key: ensure_topic(settings, key) for key in {key for key, _, _ in messages}}
    _, problem = produce_all(settings, [(topics[topic_key], key, value, None) for topic_key, key, value in messages],
                             timeout_s)
    if problem:
        raise BudgetError(f"writing to {', '.join(topics.values())} failed ({problem}); run the command again")


def publish(budgets: list[Budget], settings: Any) -> None:
    """Write budgets to usage.budgets (a budget with the same budget_id is replaced)."""
    _send(settings, [("budgets", b.budget_id, to_json_bytes(b)) for b in budgets])


def delete(budget_ids: list[str], settings: Any) -> None:
    """Tombstones for the budgets on usage.budgets, and for their controls on usage.controls.

    A running controls job withdraws the control itself when it reads the budget's tombstone;
    the second tombstone makes the withdrawal immediate and covers a job that is not running
    (a bounded run starts afresh and would never learn that the budget existed)."""
    _send(settings, [(topic, budget_id, None) for budget_id in budget_ids for topic in ("budgets", "controls")])


def read_compacted(settings: Any, key: str, timeout_s: float = 30) -> dict[str, bytes]:
    """The latest value per Kafka key of usage.budgets or usage.controls (read_committed, from the
    beginning to the end offsets at the start); deleted keys are left out."""
    from yieldmeter.topics import read_to_end

    latest: dict[str, bytes] = {}
    for message in read_to_end(settings, settings.topics[key], timeout_s) or []:
        record_key = (message.key() or b"").decode("utf-8", "replace")
        if message.value() is None:
            latest.pop(record_key, None)
        else:
            latest[record_key] = message.value()
    return latest


def read_budgets(settings: Any) -> tuple[dict[str, Budget], list[str]]:
    """The budgets in force (budget_id -> Budget), and a line for each record that is not one."""
    raw = read_compacted(settings, "budgets")
    budgets, problems = {}, []
    for key, value in sorted(raw.items()):
        try:
            budget = parse_budget(value)
        except ContractError as error:
            problems.append(f"{key}: {str(error)}")
            continue
        if budget.budget_id != key:
            problems.append(f"{key}: the record's budget_id is {budget.budget_id}; publish it with that key")
            continue
        budgets[key] = budget
    return budgets, problems


def read_controls(settings: Any) -> dict[str, Control]:
    raw = read_compacted(settings, "controls")
    controls = {}
    for key, value in raw.items():
        try:
            controls[key] = parse_control(value)
        except ContractError:
            continue  # not ours to judge here; docs/controls.md: readers skip what they cannot parse
    return controls


# --- JSON Schema -----------------------------------------------------------------------------

SCHEMA_FILES: dict[str, type[BaseModel]] = {"budget.schema.json": Budget, "control.schema.json": Control}


def write_schemas(directory: Path) -> list[Path]:
    return contracts.write_schemas(directory, SCHEMA_FILES)


if __name__ == "__main__":
    for path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(f"wrote {path}")
