"""Alerts: rules over the warehouse, incidents with a stable key, delivery to Slack.

    config = load_config(path, default_webhook=settings.slack_webhook_url)
    with open_warehouse(settings.warehouse_url) as client:
        report = cycle(client, config, datetime.now(timezone.utc))

Modules: model (Finding, Notice), registry (what a rule is, RULES), rules and mart_rules
(the rules, each registering itself), config (the alerts YAML), store (the alerts and
alert_deliveries tables), slack (Block Kit, webhook delivery), engine (evaluate, plan, cycle).
"""

from yieldmeter.alerts.config import AlertsConfig, AlertsConfigError, load_config
from yieldmeter.alerts.engine import CycleReport, Evaluation, cycle, evaluate, plan
from yieldmeter.alerts.model import Event, Finding, Notice, Severity
from yieldmeter.alerts.registry import PLANNED, RULES

# Importing the rule modules registers their rules: once here, before anything reads RULES.
from yieldmeter.alerts import mart_rules, rules  # noqa: E402,F401  isort: skip

__all__ = [
    "AlertsConfig", "AlertsConfigError", "CycleReport", "Evaluation", "Event", "Finding", "Notice", "PLANNED",
    "RULES", "Severity", "cycle", "evaluate", "load_config", "plan",
]
