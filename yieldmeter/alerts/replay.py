"""Replay the alert rules over a simulated workload, as the main job would have run them.

The rules judge one settled hour at ``now``; a simulated fortnight loaded at once has no
"now" inside it, so replay evaluates at the moments that matter: the planted spend spike's
hour (the hourly rules), and the end of the simulated span (the rules over the weekly and
monthly marts). Used by the demo and by tests/e2e/test_alerts_planted.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client

from yieldmeter.alerts.config import AlertsConfig, build_config
from yieldmeter.alerts.engine import cycle, evaluate
from yieldmeter.alerts.model import Finding, format_value
from yieldmeter.alerts.registry import RULES
from yieldmeter.alerts.store import IncidentStore
from yieldmeter.config import Settings

# The simulator's default workload spends about 1/100 of a real team's: the built-in $1/hour
# spend floor (meant to keep cents-per-hour wobbles quiet) is scaled down with it.
SIMULATION_RULES = {"rules": {"spend_spike": {"min_cost_usd": "0.2"}}}

HOURLY_RULES = ("spend_spike", "error_rate_spike", "unpriced_model", "dead_letter_spike")


@dataclass(frozen=True)
class ReplayPoint:
    label: str
    at: datetime
    rules: tuple[str, ...]


def replay_points(manifest: dict, config: AlertsConfig) -> list[ReplayPoint]:
    """When to evaluate: just after the spike's hour settled, and just after the span ended."""
    settle = timedelta(minutes=config.settle_minutes)
    spike_end = datetime.fromisoformat(manifest["planted"]["spend_spike"]["hour_end"])
    span_end = datetime.fromisoformat(manifest["options"]["end"])
    # evaluated_hour(at) is the hour that ended at least `settle` before `at`: the spike's hour
    # and the span's last hour respectively
    return [
        ReplayPoint("spike hour", spike_end + settle, HOURLY_RULES),
        ReplayPoint("end of span", span_end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1) + settle,
                    tuple(name for name in RULES if name not in HOURLY_RULES)),
    ]


def replay_findings(client: Client, config: AlertsConfig, manifest: dict) -> list[tuple[ReplayPoint, list[Finding]]]:
    """Evaluate (no incidents stored) at each replay point; the findings per point."""
    out = []
    for point in replay_points(manifest, config):
        evaluation = evaluate(client, config, point.at, [RULES[name] for name in point.rules])
        out.append((point, evaluation.findings))
    return out


def simulation_config(settings: Settings | None = None) -> AlertsConfig:
    """The built-in thresholds, with the spend floor scaled to the simulator's workload."""
    webhook = settings.slack_webhook_url if settings else None
    return build_config(SIMULATION_RULES, "built-in defaults, spend floor scaled to the simulation", webhook)


def demo_alerts(client: Client, settings: Settings, manifest: dict) -> list[str]:
    """Replay the alerts over the demo's simulated workload; printable lines.

    With no webhook configured this is a dry run (findings are printed, nothing stored);
    with one, each replay point is a real cycle: incidents stored and delivered to Slack.
    """
    config = simulation_config(settings)
    live = settings.slack_webhook_url is not None and not IncidentStore(client).missing_tables()
    lines = []
    for point in replay_points(manifest, config):
        rules = [RULES[name] for name in point.rules]
        if live:
            report = cycle(client, config, point.at, rules=rules)
            findings = [d.finding for d in report.decisions if d.finding is not None]
            skipped, failed = report.evaluation.skipped, report.evaluation.failed
        else:
            evaluation = evaluate(client, config, point.at, rules)
            findings, skipped, failed = evaluation.findings, evaluation.skipped, evaluation.failed
        lines.append(f"Alerts as of {point.at:%Y-%m-%d %H:%M} UTC ({point.label}): {len(findings)} firing"
                     + ("" if live else " (dry run: no Slack webhook configured)"))
        for f in findings:
            lines.append(f"  {f.severity.value:<8} {f.key}  {format_value(f.value, f.unit)} "
                         f"(baseline {format_value(f.baseline, f.unit)})")
        lines += [f"  skipped {name}: {why}" for name, why in skipped.items()]
        lines += [f"  failed {name}: {error}" for name, error in failed.items()]
    if live:
        lines.append("Delivered to Slack; the incidents are in the alerts table.")
    return lines
