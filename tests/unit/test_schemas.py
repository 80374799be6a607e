"""The committed JSON Schemas and README examples match the pydantic contracts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given

from yieldmeter.contracts import (
    SCHEMA_FILES,
    OutcomeEvent,
    PriceRecord,
    UsageEvent,
    schema_text,
    to_json_bytes,
)

from .test_contracts import CTX, outcome_payloads, usage_payloads

pytestmark = pytest.mark.unit

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"  # the committed schemas, in the checkout

REGENERATE = "schemas/ are stale: run `python -m yieldmeter_sdk.contracts` and commit the result"
MODELS = {"usage_event": UsageEvent, "outcome_event": OutcomeEvent, "price_record": PriceRecord}
EXAMPLE = re.compile(r"<!-- example: (\w+)( canonical| otel)? -->\s*```json\n(.*?)```", re.S)


def validator(model):
    name = next(file for file, m in SCHEMA_FILES.items() if m is model)
    schema = json.loads((SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_committed_schema_matches_the_model(name):
    path = SCHEMA_DIR / name
    assert path.exists(), REGENERATE
    assert path.read_text() == schema_text(SCHEMA_FILES[name]), REGENERATE


def readme_examples():
    text = (SCHEMA_DIR / "README.md").read_text()
    return [(kind, (flavour or "").strip(), body) for kind, flavour, body in EXAMPLE.findall(text)]


def test_readme_has_examples_of_every_record():
    assert {kind for kind, _, _ in readme_examples()} == set(MODELS)


@pytest.mark.parametrize(("kind", "flavour", "body"), readme_examples())
def test_readme_examples_are_valid(kind, flavour, body):
    model = MODELS[kind]
    payload = json.loads(body)
    event = model.model_validate(payload, context={"now": datetime(2026, 11, 22, 15, tzinfo=UTC)})
    if flavour != "otel":  # the schema describes the snake_case form only
        validator(model).validate(payload)
    if flavour == "canonical":  # shown exactly as the serializer writes it
        assert json.loads(to_json_bytes(event)) == payload


@given(usage_payloads())
def test_every_written_usage_event_matches_the_schema(payload):
    wire = json.loads(to_json_bytes(UsageEvent.model_validate(payload, context=CTX)))
    validator(UsageEvent).validate(wire)


@given(outcome_payloads())
def test_every_written_outcome_matches_the_schema(payload):
    wire = json.loads(to_json_bytes(OutcomeEvent.model_validate(payload, context=CTX)))
    validator(OutcomeEvent).validate(wire)


def test_schema_rejects_unknown_fields_and_negative_counts():
    check = validator(UsageEvent)
    base = {"event_id": "e", "occurred_at": "2026-11-22T13:00:00Z", "org_id": "o", "team": "t", "user_id": "u",
            "app": "a", "provider": "openai", "request_model": "m", "input_tokens": 1, "output_tokens": 1}
    check.validate(base)
    for bad in ({**base, "colour": "red"}, {**base, "input_tokens": -1}, {k: v for k, v in base.items() if k != "app"}):
        with pytest.raises(jsonschema.ValidationError):
            check.validate(bad)
