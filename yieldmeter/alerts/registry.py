"""The alert rule registry: what a rule is, the table of them, and the helpers every rule shares.

A rule is a function ``(client, config, now) -> list[Finding]`` registered with :func:`rule`,
together with the pydantic model of its parameters (validated from the alerts YAML, overridable
per org and per team) and the warehouse tables it reads. The rule modules (:mod:`.rules` over
the rollups and raw tables, :mod:`.mart_rules` over the dbt marts) import this module and
register their rules; the config and the engine read :data:`RULES`. Nothing here imports a rule
module or the config, so there is no import circle: the package's ``__init__`` imports the rule
modules once, which fills the registry before anything can read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Callable

from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, ConfigDict, Field

from yieldmeter.alerts.model import Finding

if TYPE_CHECKING:
    from yieldmeter.alerts.config import AlertsConfig


class RuleParams(BaseModel):
    """Parameters every rule has; the `defaults:` block of the alerts YAML sets them for all rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Evaluate this rule (per org/team: false silences it there).")
    cooldown_minutes: int = Field(
        360, ge=0, description="An open incident is not repeated within this time unless it worsens."
    )
    worsen_factor: Decimal = Field(
        Decimal("1.5"), gt=1, description="Notify again within the cooldown when the value grows by this factor."
    )


Finder = Callable[[Client, "AlertsConfig", datetime], list[Finding]]


@dataclass(frozen=True)
class RuleSpec:
    name: str
    evaluate: Finder
    params: type[RuleParams]
    tables: tuple[str, ...]  # the rule is skipped (not failed) while one of these does not exist
    description: str
    remedy: str = "run `yieldmeter migrate`"  # what makes the tables exist, for the skip message


RULES: dict[str, RuleSpec] = {}

PLANNED: dict[str, str] = {}  # rule name -> what it still needs (none at present)


def rule(
    name: str, params: type[RuleParams], tables: tuple[str, ...], remedy: str = "run `yieldmeter migrate`"
) -> Callable[[Finder], Finder]:
    def register(function: Finder) -> Finder:
        description = (function.__doc__ or "").strip().splitlines()[0]
        RULES[name] = RuleSpec(name, function, params, tables, description, remedy)
        return function

    return register


def title(label: str, entity: dict[str, str]) -> str:
    return f"{label}: " + " / ".join(entity.values())


def settle(config: AlertsConfig) -> timedelta:
    """How long after an hour ends its data count as complete (the alerts YAML's settle_minutes)."""
    return timedelta(minutes=config.settle_minutes)
