"""Event contracts: what validates, what does not, and that JSON round-trips exactly."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from yieldmeter.contracts import (
    MAX_COUNT,
    ContractError,
    OutcomeEvent,
    PriceRecord,
    UsageEvent,
    explain,
    parse_outcome,
    parse_price,
    parse_usage,
    to_json_bytes,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 13, 0, 0, tzinfo=UTC)
CTX = {"now": NOW}
WIRE_TIME = re.compile(r'"(occurred_at|effective_from)":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"')


def usage_payload(**overrides):
    payload = {
        "event_id": "evt-1", "occurred_at": "2026-11-22T12:59:00.123Z", "org_id": "acme", "team": "support",
        "user_id": "u-1", "app": "helpdesk", "provider": "openai", "request_model": "gpt-4o",
        "input_tokens": 1000, "cache_read_tokens": 200, "cache_write_tokens": 0, "output_tokens": 300,
        "reasoning_tokens": 100,
    }
    return {**payload, **overrides}


def outcome_payload(**overrides):
    payload = {
        "outcome_id": "out-1", "occurred_at": "2026-11-22T12:59:00Z", "org_id": "acme", "team": "support",
        "user_id": "u-1", "app": "helpdesk", "session_id": "s-1", "outcome_type": "ticket_resolved",
        "success": True, "value_usd": "12.50",
    }
    return {**payload, **overrides}


def price_payload(**overrides):
    payload = {
        "provider": "anthropic", "model": "claude-sonnet-4-5", "effective_from": "2025-09-29T00:00:00Z",
        "input_per_mtok": "3", "output_per_mtok": "15", "cache_read_per_mtok": "0.3",
        "cache_write_per_mtok": "3.75", "source": "genai-prices",
    }
    return {**payload, **overrides}


def validate(model, payload):
    return model.model_validate(payload, context=CTX)


# --- strategies --------------------------------------------------------------------------------

text_chars = st.characters(exclude_categories=("Cs",))  # lone surrogates cannot be UTF-8 encoded
names = st.text(text_chars, min_size=1, max_size=128).filter(lambda s: not s.isspace() and s.strip() != "")
identifiers = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
times = st.datetimes(min_value=datetime(2000, 1, 2), max_value=NOW.replace(tzinfo=None)).flatmap(
    lambda dt: st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]).map(
        lambda tz: dt.replace(tzinfo=UTC).astimezone(tz)
    )
)
attributes = st.dictionaries(st.text(text_chars, min_size=1, max_size=128), st.text(text_chars, max_size=1024),
                             max_size=5)
money = st.integers(0, 9).flatmap(lambda places: st.decimals(
    min_value=0, max_value=Decimal(10**12) - 1, allow_nan=False, allow_infinity=False, places=places))


@st.composite
def usage_payloads(draw):
    input_tokens = draw(st.integers(0, MAX_COUNT))
    cache_read = draw(st.integers(0, input_tokens))
    cache_write = draw(st.integers(0, input_tokens - cache_read))
    output_tokens = draw(st.integers(0, MAX_COUNT))
    optional = st.none() | names
    return {
        "event_id": draw(names), "occurred_at": draw(times), "org_id": draw(names), "team": draw(names),
        "user_id": draw(names), "app": draw(names), "feature": draw(optional), "provider": draw(identifiers),
        "request_model": draw(names), "response_model": draw(optional), "operation": draw(identifiers),
        "input_tokens": input_tokens, "cache_read_tokens": cache_read, "cache_write_tokens": cache_write,
        "output_tokens": output_tokens, "reasoning_tokens": draw(st.integers(0, output_tokens)),
        "service_tier": draw(identifiers), "session_id": draw(optional), "trace_id": draw(optional),
        "latency_ms": draw(st.none() | st.integers(0, 10**6)),
        "status": draw(st.sampled_from(["ok", "error", "cancelled"])),
        "error_type": draw(optional), "retry_of": draw(optional), "tool_calls": draw(st.integers(0, 100)),
        "attributes": draw(attributes),
    }


@st.composite
def outcome_payloads(draw):
    return {
        "outcome_id": draw(names), "occurred_at": draw(times), "org_id": draw(names), "team": draw(names),
        "user_id": draw(names), "app": draw(names), "session_id": draw(st.none() | names),
        "trace_id": draw(st.none() | names),
        "outcome_type": draw(st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True)),
        "success": draw(st.booleans()), "value_usd": draw(st.none() | money), "attributes": draw(attributes),
    }


# --- round trips -------------------------------------------------------------------------------


def assert_round_trip(model, event, parse):
    wire = to_json_bytes(event)
    again = parse(wire)
    assert again == event
    assert to_json_bytes(again) == wire
    assert WIRE_TIME.search(wire.decode())


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(usage_payloads())
def test_valid_usage_events_round_trip(payload):
    event = validate(UsageEvent, payload)
    assert event.response_model == (payload["response_model"] or payload["request_model"])
    assert event.occurred_at.tzinfo is UTC and event.occurred_at.microsecond % 1000 == 0
    assert event.uncached_input_tokens + event.cache_read_tokens + event.cache_write_tokens == event.input_tokens
    assert_round_trip(UsageEvent, event, lambda b: parse_usage(b, now=NOW))


@given(outcome_payloads())
def test_valid_outcomes_round_trip(payload):
    event = validate(OutcomeEvent, payload)
    assert_round_trip(OutcomeEvent, event, lambda b: parse_outcome(b, now=NOW))
    if event.value_usd is not None:
        written = json.loads(to_json_bytes(event))["value_usd"]  # exact, as a plain string
        assert Decimal(written) == event.value_usd and re.fullmatch(r"\d{1,12}(\.\d{1,9})?", written)


@given(st.integers(0, MAX_COUNT), money, money)
def test_valid_prices_round_trip(threshold, rate, above):
    record = PriceRecord.model_validate(price_payload(
        input_per_mtok=rate, output_per_mtok=rate, tier_threshold_input_tokens=threshold or None,
        input_above_per_mtok=above if threshold else None, output_above_per_mtok=above if threshold else None))
    assert_round_trip(PriceRecord, record, parse_price)


def test_wire_shape_of_a_usage_event():
    event = validate(UsageEvent, usage_payload(occurred_at="2026-11-22T14:00:00.123456+01:00"))
    wire = json.loads(to_json_bytes(event))
    assert wire["occurred_at"] == "2026-11-22T13:00:00.123Z"
    assert wire["schema_version"] == 1
    assert wire["response_model"] == "gpt-4o"
    assert list(wire)[:3] == ["schema_version", "event_id", "occurred_at"]


def test_otel_attribute_names_are_accepted_and_written_as_snake_case():
    payload = usage_payload()
    for ours, theirs in [("provider", "gen_ai.provider.name"), ("request_model", "gen_ai.request.model"),
                         ("input_tokens", "gen_ai.usage.input_tokens"), ("output_tokens", "gen_ai.usage.output_tokens"),
                         ("cache_read_tokens", "gen_ai.usage.cache_read.input_tokens"),
                         ("cache_write_tokens", "gen_ai.usage.cache_creation.input_tokens"),
                         ("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens")]:
        payload[theirs] = payload.pop(ours)
    payload.update({"gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.operation.name": "chat",
                    "gen_ai.conversation.id": "conv-1", "error.type": "timeout", "user.id": payload.pop("user_id")})
    event = validate(UsageEvent, payload)
    assert event == validate(UsageEvent, usage_payload(response_model="gpt-4o-2024-08-06", session_id="conv-1",
                                                       error_type="timeout"))
    wire = json.loads(to_json_bytes(event))
    assert not any("." in key for key in wire)


def test_provider_and_tier_are_lower_cased():
    event = validate(UsageEvent, usage_payload(provider="OpenAI", service_tier="Flex"))
    assert (event.provider, event.service_tier) == ("openai", "flex")


def test_helpers():
    event = validate(UsageEvent, usage_payload())
    assert (event.uncached_input_tokens, event.total_tokens) == (800, 1300)


# --- what never validates ----------------------------------------------------------------------

COUNTS = ["input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
          "tool_calls", "latency_ms"]
NAMES = ["event_id", "org_id", "team", "user_id", "app", "feature", "session_id", "trace_id", "error_type", "retry_of"]


def mutations(draw):
    """One way to break a valid payload: (description, payload)."""
    kind = draw(st.sampled_from([
        "negative", "too_big", "bool", "float", "string_count", "cache_over_input", "reasoning_over_output",
        "naive_time", "future", "before_2000", "epoch_number", "long_name", "empty_name", "blank_name",
        "many_attributes", "long_key", "long_value", "non_string_value", "unknown_field", "both_alias_and_name",
        "bad_status", "bad_provider", "schema_version",
    ]))
    field = draw(st.sampled_from(COUNTS))
    name = draw(st.sampled_from(NAMES))
    p = usage_payload()
    match kind:
        case "negative": p[field] = -draw(st.integers(1, 10**12))
        case "too_big": p[field] = draw(st.integers(MAX_COUNT + 1, 10**15))
        case "bool": p[field] = draw(st.booleans())
        case "float": p[field] = float(draw(st.integers(0, 1000)))
        case "string_count": p[field] = str(draw(st.integers(0, 1000)))
        case "cache_over_input":
            p["cache_read_tokens"] = draw(st.integers(0, 2000))
            p["cache_write_tokens"] = p["input_tokens"] - p["cache_read_tokens"] + draw(st.integers(1, 1000))
        case "reasoning_over_output": p["reasoning_tokens"] = p["output_tokens"] + draw(st.integers(1, 1000))
        case "naive_time": p["occurred_at"] = draw(st.datetimes(min_value=datetime(2001, 1, 1))).isoformat()
        case "future":
            late = timedelta(minutes=5, milliseconds=draw(st.integers(1, 10**10)))
            p["occurred_at"] = (NOW + late).isoformat()
        case "before_2000":
            p["occurred_at"] = draw(st.datetimes(max_value=datetime(1999, 12, 31), timezones=st.just(UTC)))
        case "epoch_number": p["occurred_at"] = draw(st.integers(10**9, 2 * 10**9))
        case "long_name": p[name] = "x" * draw(st.integers(129, 500))
        case "empty_name": p[name] = ""
        case "blank_name": p[name] = draw(st.sampled_from([" ", "\t", "  \n "]))
        case "many_attributes": p["attributes"] = {f"k{i}": "v" for i in range(draw(st.integers(65, 100)))}
        case "long_key": p["attributes"] = {"k" * draw(st.integers(129, 300)): "v"}
        case "long_value": p["attributes"] = {"k": "v" * draw(st.integers(1025, 3000))}
        case "non_string_value": p["attributes"] = {"k": draw(st.integers() | st.booleans() | st.none())}
        case "unknown_field": p[draw(st.sampled_from(["model", "cost_usd", "extra", "tokens"]))] = 1
        case "both_alias_and_name": p["gen_ai.usage.input_tokens"] = p["input_tokens"]
        case "bad_status": p["status"] = draw(st.sampled_from(["OK", "failed", "", "timeout"]))
        case "bad_provider": p["provider"] = draw(st.sampled_from(["", "open ai", "-x", "a" * 65, "open/ai"]))
        case "schema_version": p["schema_version"] = draw(st.sampled_from([0, 2, "1", None]))
    return kind, p


@given(st.data())
def test_invalid_usage_events_never_validate(data):
    kind, payload = mutations(data.draw)
    with pytest.raises(ValidationError):
        validate(UsageEvent, payload)
    wire = json.dumps(payload, default=str)
    with pytest.raises(ContractError) as caught:
        parse_usage(wire, now=NOW)
    assert str(caught.value).startswith("invalid UsageEvent: ")


@pytest.mark.parametrize(("payload", "expected"), [
    (usage_payload(input_tokens=-1), "input_tokens: Input should be greater than or equal to 0 (got -1)"),
    (usage_payload(output_tokens=True), "output_tokens: Input should be a valid integer (got True)"),
    (usage_payload(cache_read_tokens=900, cache_write_tokens=200),
     "(event): cache_read_tokens + cache_write_tokens (1100) must not exceed input_tokens (1000)"),
    (usage_payload(reasoning_tokens=301), "(event): reasoning_tokens (301) must not exceed output_tokens (300)"),
    (usage_payload(occurred_at="2026-11-22T12:00:00"), "occurred_at: must carry a UTC offset"),
    (usage_payload(occurred_at="2026-11-22T13:05:00.001Z"),
     "occurred_at: must not be more than 5 minutes in the future"),
    (usage_payload(occurred_at="1999-12-31T23:59:59Z"), "occurred_at: must not be before 2000-01-01"),
    (usage_payload(occurred_at=1763816400), "occurred_at: must be an ISO-8601 string"),
    (usage_payload(colour="red"), "colour: unknown field (free-form data goes in 'attributes')"),
    (usage_payload(attributes={str(i): "v" for i in range(65)}), "attributes: Dictionary should have at most 64 items"),
    ({k: v for k, v in usage_payload().items() if k != "org_id"}, "org_id: required field is missing"),
])
def test_errors_name_the_field_and_the_rule(payload, expected):
    with pytest.raises(ValidationError) as caught:
        validate(UsageEvent, payload)
    assert expected in explain(caught.value)


def test_explain_puts_one_problem_on_each_line():
    with pytest.raises(ValidationError) as caught:
        validate(UsageEvent, usage_payload(input_tokens=-1, team="", extra=1))
    lines = explain(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["team", "input_tokens", "extra"]


def test_parse_reports_bad_json():
    with pytest.raises(ContractError, match="Invalid JSON"):
        parse_usage(b"{not json")
    with pytest.raises(ContractError, match="object"):
        parse_usage(b"[]")


def test_the_clock_is_injectable():
    wire = json.dumps(usage_payload(occurred_at="2030-01-01T00:00:00Z"))
    with pytest.raises(ContractError, match="future"):
        parse_usage(wire)  # the wall clock is before 2030 ...
    assert parse_usage(wire, now=datetime(2030, 1, 1, tzinfo=UTC)).occurred_at.year == 2030  # ... this one is not


# --- outcomes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "field"), [
    ({"value_usd": "-0.01"}, "value_usd"),
    ({"value_usd": "0.0000000001"}, "value_usd"),  # 10 decimals
    ({"value_usd": "1000000000000"}, "value_usd"),  # 13 integer digits
    ({"value_usd": "NaN"}, "value_usd"),
    ({"value_usd": True}, "value_usd"),
    ({"outcome_type": "Ticket-Resolved"}, "outcome_type"),
    ({"outcome_type": "1st_reply"}, "outcome_type"),
    ({"success": "true"}, "success"),
    ({"success": 1}, "success"),
    ({"event_id": "x"}, "event_id"),
])
def test_invalid_outcomes(override, field):
    with pytest.raises(ValidationError) as caught:
        validate(OutcomeEvent, outcome_payload(**override))
    assert explain(caught.value).startswith(field)


def test_money_is_exact_and_plain():
    assert json.loads(to_json_bytes(validate(OutcomeEvent, outcome_payload(value_usd=0.1))))["value_usd"] == "0.1"
    assert validate(OutcomeEvent, outcome_payload(value_usd="1E+2")).value_usd == Decimal("100")
    assert str(validate(OutcomeEvent, outcome_payload(value_usd="-0")).value_usd) == "0"
    assert validate(OutcomeEvent, outcome_payload(value_usd="999999999999.999999999")).value_usd
    for tiny in ("0.0000001", "0.000000000", "0E-9"):  # str() would write 1E-7 and 0E-9
        wire = json.loads(to_json_bytes(validate(OutcomeEvent, outcome_payload(value_usd=tiny))))
        assert "E" not in wire["value_usd"]


# --- prices ------------------------------------------------------------------------------------


def test_price_keys():
    payload = price_payload(model="Claude-Sonnet-4-5", effective_from="2025-09-29T02:00:00+02:00")
    record = parse_price(json.dumps(payload))
    assert record.key == "anthropic/claude-sonnet-4-5/default"
    assert record.price_id == "anthropic/claude-sonnet-4-5/default@2025-09-29T00:00:00.000Z"


def test_price_fallbacks_and_tiers():
    flat = validate(PriceRecord, price_payload(cache_read_per_mtok=None, cache_write_per_mtok=None))
    assert flat.rates_for(10**6) == (Decimal(3), Decimal(15), Decimal(3), Decimal(3), Decimal(15))
    tiered = validate(PriceRecord, price_payload(tier_threshold_input_tokens=200_000, input_above_per_mtok="6",
                                                 output_above_per_mtok="22.5", cache_read_above_per_mtok="0.6"))
    assert tiered.rates_for(200_000).input == Decimal(3)  # "above" means strictly more
    assert tiered.rates_for(200_001) == (Decimal(6), Decimal("22.5"), Decimal("0.6"), Decimal("3.75"), Decimal("22.5"))


@pytest.mark.parametrize(("override", "message"), [
    ({"input_above_per_mtok": "6"}, "without tier_threshold_input_tokens"),
    ({"tier_threshold_input_tokens": 200_000, "input_above_per_mtok": "6"}, "needs input_above_per_mtok and output"),
    ({"tier_threshold_input_tokens": 0, "input_above_per_mtok": "6", "output_above_per_mtok": "9"}, "greater than 0"),
    ({"input_per_mtok": 1.5e-10}, "decimal places"),
    ({"input_per_mtok": "-1"}, "greater than or equal to 0"),
    ({"currency": "EUR"}, "currency"),
    ({"source": "web"}, "source"),
    ({"effective_from": "1969-12-31T23:59:59Z"}, "before 1970"),
])
def test_invalid_prices(override, message):
    with pytest.raises(ValidationError) as caught:
        validate(PriceRecord, price_payload(**override))
    assert message in explain(caught.value)


def test_prices_may_take_effect_in_the_future():
    assert validate(PriceRecord, price_payload(effective_from="2099-01-01T00:00:00Z")).effective_from.year == 2099


@pytest.mark.parametrize(("model_id", "usage", "record"), [
    # genai-prices snapshot values: gpt-4o (cache reads at half price), claude-sonnet-4-5 (200k context tier)
    ("gpt-4o", dict(input_tokens=10_000, cache_read_tokens=6_000, output_tokens=700, reasoning_tokens=0),
     dict(provider="openai", model="gpt-4o", input_per_mtok="2.5", output_per_mtok="10", cache_read_per_mtok="1.25",
          cache_write_per_mtok=None)),
    ("claude-sonnet-4-5", dict(input_tokens=150_000, cache_read_tokens=100_000, cache_write_tokens=20_000,
                               output_tokens=4_000),
     dict(tier_threshold_input_tokens=200_000, input_above_per_mtok="6", output_above_per_mtok="22.5",
          cache_read_above_per_mtok="0.6", cache_write_above_per_mtok="7.5")),
    ("claude-sonnet-4-5", dict(input_tokens=250_000, cache_read_tokens=100_000, cache_write_tokens=20_000,
                               output_tokens=4_000),
     dict(tier_threshold_input_tokens=200_000, input_above_per_mtok="6", output_above_per_mtok="22.5",
          cache_read_above_per_mtok="0.6", cache_write_above_per_mtok="7.5")),
])
def test_cost_matches_genai_prices(model_id, usage, record):
    """cost_usd is the reference formula the pricing job follows; genai-prices must agree with it."""
    import genai_prices

    price = validate(PriceRecord, price_payload(**record))
    event = validate(UsageEvent, usage_payload(**{"cache_write_tokens": 0, "reasoning_tokens": 0, **usage}))
    theirs = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=event.input_tokens, cache_read_tokens=event.cache_read_tokens,
                           cache_write_tokens=event.cache_write_tokens, output_tokens=event.output_tokens),
        model_id, provider_id=price.provider, genai_request_timestamp=NOW)
    assert price.cost_usd(event) == theirs.total_price
