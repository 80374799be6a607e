"""The alerts YAML: rule thresholds (defaults, per org, per team), cooldowns, Slack routes.

Layers, later wins: each rule's built-in defaults < ``defaults:`` (fields every rule has) <
``rules.<name>`` < an org override < an org+team override. Every layer is validated against
the rule's pydantic model when the file is loaded; an error names the file and the field.
Webhook URLs are secrets: a route names the environment variable that holds its URL
(``webhook_url_env``), and only the route name is ever printed or stored. The ``default``
route is YIELDMETER_SLACK_WEBHOOK_URL unless the file defines one. See infra/alerts.example.yaml.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from yieldmeter.alerts.registry import PLANNED, RULES, RuleParams
from yieldmeter.errors import YieldmeterError

DEFAULT_ROUTE = "default"


class AlertsConfigError(YieldmeterError):
    """The alerts YAML has a value it cannot take; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteSpec(_Strict):
    webhook_url_env: str | None = Field(None, description="Environment variable holding the webhook URL (preferred).")
    webhook_url: SecretStr | None = Field(None, description="The webhook URL itself (a secret: keep the file private).")

    @model_validator(mode="after")
    def _one(self) -> RouteSpec:
        if (self.webhook_url_env is None) == (self.webhook_url is None):
            raise ValueError("give exactly one of webhook_url_env (preferred) or webhook_url")
        return self


class RoutingSpec(_Strict):
    org: str
    team: str | None = None
    route: str


class OverrideSpec(_Strict):
    org: str
    team: str | None = None
    rules: dict[str, dict[str, Any] | None] = {}


class DeliverySpec(_Strict):
    timeout_seconds: float = Field(10, gt=0, description="HTTP timeout of one request to Slack.")
    max_retries: int = Field(3, ge=0, le=10, description="Retries within one delivery attempt (429, 500/503, connection).")
    backoff_seconds: float = Field(0.5, ge=0, description="Wait before the first retry; doubles each retry.")
    max_retry_after_seconds: float = Field(
        30, ge=0, description="Wait at most this long for a 429's Retry-After; longer: retry on a later cycle."
    )
    retry_base_seconds: float = Field(60, ge=0, description="A failed delivery is retried after this; doubles per failure.")
    retry_max_seconds: float = Field(3600, ge=0, description="Longest wait between retries of a failed delivery.")


class AlertsFile(_Strict):
    settle_minutes: int = Field(5, ge=0, le=120, description="Judge only hours that ended at least this long ago.")
    defaults: dict[str, Any] = {}
    rules: dict[str, dict[str, Any] | None] = {}
    overrides: list[OverrideSpec] = []
    routes: dict[str, RouteSpec] = {}
    routing: list[RoutingSpec] = []
    delivery: DeliverySpec = DeliverySpec()


@dataclass(frozen=True)
class Route:
    name: str
    url: SecretStr | None
    problem: str | None = None  # a configured route whose URL is missing: deliveries fail and are retried

    @property
    def unrouted(self) -> bool:
        """No webhook at all: notices are stored and printed, which is not an error."""
        return self.url is None and self.problem is None


@dataclass(frozen=True)
class AlertsConfig:
    source: str  # the file, or "built-in defaults", for messages
    settle_minutes: int
    delivery: DeliverySpec
    routes: dict[str, RouteSpec]
    routing: tuple[RoutingSpec, ...]
    default_webhook: SecretStr | None
    _params: dict[tuple[str, str | None, str | None], RuleParams]  # (rule, org, team) -> params

    def params(self, rule: str, org: str, team: str) -> Any:
        """The parameters of a rule for an entity: org+team override, else org, else the rule's own."""
        for key in ((rule, org, team), (rule, org, None), (rule, None, None)):
            if key in self._params:
                return self._params[key]
        raise KeyError(rule)

    def variants(self, rule: str) -> list[Any]:
        """Every distinct parameter set of a rule (to know what the queries must cover)."""
        return [params for (name, _, _), params in self._params.items() if name == rule]

    def route_for(self, org: str, team: str) -> Route:
        name = DEFAULT_ROUTE
        for entry in self.routing:  # the most specific match wins: org+team, then org
            if entry.org == org and entry.team == team:
                name = entry.route
                break
            if entry.org == org and entry.team is None and name == DEFAULT_ROUTE:
                name = entry.route
        spec = self.routes.get(name)
        if spec is None:  # only "default" can be undefined (checked at load)
            return Route(name, self.default_webhook)
        if spec.webhook_url is not None:
            return Route(name, spec.webhook_url)
        url = os.environ.get(spec.webhook_url_env or "", "").strip()
        if not url:
            return Route(name, None, f"route {name!r}: environment variable {spec.webhook_url_env} is not set")
        return Route(name, SecretStr(url))


def _where(loc: tuple, prefix: str) -> str:
    parts = [prefix] if prefix else []
    return ".".join([*parts, *(f"[{p}]" if isinstance(p, int) else str(p) for p in loc)]).replace(".[", "[")


def _validate(model: type[BaseModel], values: dict, prefix: str, problems: list[str]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        for problem in error.errors():
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] == "extra_forbidden":
                known = f" (known: {', '.join(model.model_fields)})" if len(problem["loc"]) == 1 else ""
                message = f"unknown setting{known}"
            problems.append(f"{_where(problem['loc'], prefix)}: {message}")
        return None


def build_config(data: dict | None, source: str, default_webhook: SecretStr | None = None) -> AlertsConfig:
    """Validate the parsed YAML; raise AlertsConfigError listing every problem with its field."""
    problems: list[str] = []
    raw = _validate(AlertsFile, data or {}, "", problems)
    if raw is None:
        raise AlertsConfigError(f"{source}:\n  " + "\n  ".join(problems))

    common = set(RuleParams.model_fields)
    for field in set(raw.defaults) - common:
        problems.append(f"defaults.{field}: unknown setting (every rule has: {', '.join(sorted(common))})")

    def check_rule(name: str, where: str) -> bool:
        if name in RULES:
            return True
        if name in PLANNED:
            problems.append(f"{where}: the rule {name!r} is planned but not available yet ({PLANNED[name]})")
        else:
            problems.append(f"{where}: no rule named {name!r} (rules: {', '.join(sorted(RULES))})")
        return False

    params: dict[tuple[str, str | None, str | None], RuleParams] = {}
    defaults = {k: v for k, v in raw.defaults.items() if k in common}
    for name in raw.rules:
        check_rule(name, f"rules.{name}")
    for name, spec in RULES.items():
        values = defaults | (raw.rules.get(name) or {})
        base = _validate(spec.params, values, f"rules.{name}", problems)
        if base is None:
            continue
        params[(name, None, None)] = base
        # Org overrides first, so an org+team override builds on its org's.
        for index, override in sorted(enumerate(raw.overrides), key=lambda item: item[1].team is not None):
            if name not in override.rules:
                continue
            layer = override.rules[name]
            parent = params.get((name, override.org, None), base) if override.team else base
            merged = parent.model_dump() | (layer or {})
            made = _validate(spec.params, merged, f"overrides[{index}].rules.{name}", problems)
            if made is not None:
                params[(name, override.org, override.team)] = made
    for index, override in enumerate(raw.overrides):
        for name in override.rules:
            check_rule(name, f"overrides[{index}].rules.{name}")

    for index, entry in enumerate(raw.routing):
        if entry.route not in raw.routes and entry.route != DEFAULT_ROUTE:
            known = ", ".join([DEFAULT_ROUTE, *raw.routes])
            problems.append(f"routing[{index}].route: no route named {entry.route!r} under routes: (known: {known})")
    if problems:
        raise AlertsConfigError(f"{source}:\n  " + "\n  ".join(problems))
    return AlertsConfig(
        source=source,
        settle_minutes=raw.settle_minutes,
        delivery=raw.delivery,
        routes=dict(raw.routes),
        routing=tuple(raw.routing),
        default_webhook=default_webhook,
        _params=params,
    )


def load_config(path: Path | None, default_webhook: SecretStr | None = None) -> AlertsConfig:
    """Read an alerts YAML file; None: the built-in defaults (every rule, the default route)."""
    if path is None:
        return build_config({}, "built-in defaults", default_webhook)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise AlertsConfigError(f"{path}: no such file (see infra/alerts.example.yaml)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AlertsConfigError(f"{path}:{where}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if data is not None and not isinstance(data, dict):
        raise AlertsConfigError(f"{path}: the top level must be a mapping (settle_minutes, rules, routes, ...)")
    return build_config(data, str(path), default_webhook)
