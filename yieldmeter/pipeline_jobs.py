"""Launch the pipeline job (jobs/pipeline.py) with its topics and model rules from the settings.

    from yieldmeter.pipeline_jobs import run_pipeline
    run_pipeline(settings)                    # bounded: everything up to the end offsets, then stop
    job = start_pipeline(settings, bounded=False)   # continuous; job.stop() kills it as a crash would

The job prices a call by its catalogue model id, which yieldmeter.normalize computes with
genai-prices' matching rules. The Flink environment has no genai-prices, so the rules are
exported here (:func:`export_model_rules`) and the job bundles them into its Java decoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from yieldmeter.config import Settings
from yieldmeter.flink import FlinkJob, start_job

JOB = "pipeline"


def _clause(clause: Any) -> dict[str, Any]:
    """A genai-prices match clause as JSON (the shape ModelResolver.java reads)."""
    from genai_prices import types

    simple = {
        types.ClauseEquals: "equals",
        types.ClauseStartsWith: "starts_with",
        types.ClauseEndsWith: "ends_with",
        types.ClauseContains: "contains",
        types.ClauseRegex: "regex",
    }
    for kind, key in simple.items():
        if isinstance(clause, kind):
            return {key: getattr(clause, key)}
    if isinstance(clause, types.ClauseOr):
        return {"or": [_clause(c) for c in clause.or_]}
    if isinstance(clause, types.ClauseAnd):
        return {"and": [_clause(c) for c in clause.and_]}
    raise TypeError(f"genai-prices match clause {type(clause).__name__} is not supported by the pipeline job")


def model_rules() -> dict[str, Any]:
    """Everything normalize_provider and normalize_model consult: genai-prices' providers and match rules, our tables."""
    from genai_prices.data_snapshot import get_snapshot

    from yieldmeter import normalize

    return {
        "provider_catalogue": normalize.PROVIDER_CATALOGUE,
        "provider_spellings": normalize.PROVIDER_SPELLINGS,
        "canonical": {gp: names[0] for gp, names in normalize.OTEL_PROVIDERS.items()},
        "aliases": normalize.MODEL_ALIASES,
        "trailing_date": normalize._TRAILING_DATE.pattern,
        "gemini_version": normalize._GEMINI_VERSION.pattern,
        "providers": [
            {
                "id": provider.id,
                "provider_match": _clause(provider.provider_match) if provider.provider_match else None,
                "fallback": list(provider.fallback_model_providers or ()),
                "models": [{"id": model.id, "match": _clause(model.match)} for model in provider.models],
            }
            for provider in get_snapshot().providers
        ],
    }


def export_model_rules(path: Path) -> Path:
    """Write the rules to ``path`` (only when they changed, so the job's jar cache stays warm)."""
    text = json.dumps(model_rules(), sort_keys=True, separators=(",", ":"))
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def pipeline_arguments(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The job's own options: topics from the settings, model rules from genai-prices."""
    rules = export_model_rules(settings.state_path / "flink" / "model_rules.json")
    return {
        "events_topic": settings.topic_events,
        "prices_topic": settings.topic_prices,
        "priced_topic": settings.topic_priced,
        "sessions_topic": settings.topic_sessions,
        "dlq_topic": settings.topic_dlq,
        "budgets_topic": settings.topic_budgets,
        "controls_topic": settings.topic_controls,
        "model_rules": str(rules),
    } | overrides


def start_pipeline(settings: Settings, *, bounded: bool = True, **job_args: Any) -> FlinkJob:
    """Start the pipeline job on the local mini-cluster; ``job_args`` override its options
    (e.g. session_gap="10min", out_of_orderness="1min", dedup_ttl="7d", parallelism=1)."""
    arguments = pipeline_arguments(settings, **job_args)
    _ensure_budget_topics(settings, arguments["budgets_topic"], arguments["controls_topic"])
    return start_job(JOB, settings, continuous=not bounded, **arguments)


def _ensure_budget_topics(settings: Settings, budgets: str, controls: str) -> None:
    """The controls job reads the budgets topic and writes the controls topic; a source on a
    missing topic fails the job, and an install from before budgets has neither."""
    from yieldmeter.topics import admin_client, create_topics, topic_layout

    layout = topic_layout()
    create_topics(admin_client(settings), {budgets: layout["budgets"], controls: layout["controls"]})


def run_pipeline(settings: Settings, *, bounded: bool = True, timeout_s: float | None = None, **job_args: Any) -> None:
    """Run the pipeline to completion (bounded: up to the end offsets present at start)."""
    start_pipeline(settings, bounded=bounded, **job_args).wait(timeout_s)
