"""The span -> UsageEvent mapping and request decoding of the OTLP intake, without a broker."""

from __future__ import annotations

import time

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.conftest import make_settings
from yieldmeter.otlp import BadRequest, SpanRejected, _attributes, decode, is_model_call, span_to_event

pytestmark = pytest.mark.unit

CALL = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "user.id": "u-1",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}
RESOURCE = {"yieldmeter.org_id": "acme", "yieldmeter.team": "support", "service.name": "helpdesk"}


def make_span(start_ns: int | None = None, error: bool = False) -> Span:
    start = start_ns if start_ns is not None else time.time_ns() - 10**9
    span = Span(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name="chat",
                start_time_unix_nano=start, end_time_unix_nano=start + 5 * 10**8)
    if error:
        span.status.code = Status.STATUS_CODE_ERROR
    return span


def event(attributes: dict, resource: dict = RESOURCE, span: Span | None = None, **settings):
    return span_to_event(span or make_span(), attributes, resource, make_settings("/tmp/unused", **settings))


@pytest.mark.parametrize(("attributes", "is_call"), [
    (CALL, True),
    ({"gen_ai.system": "anthropic"}, True),
    ({"gen_ai.operation.name": "invoke_agent", **CALL}, False),  # sums its child calls: counted twice
    ({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}, False),
    ({"gen_ai.conversation.id": "c-1"}, False),
    ({"http.request.method": "GET"}, False),
])
def test_which_spans_are_model_calls(attributes, is_call):
    assert is_model_call(attributes) is is_call


def test_span_attributes_win_over_resource_attributes_and_settings_fill_the_rest():
    got = event({**CALL, "yieldmeter.team": "billing"}, {"yieldmeter.org_id": "acme", "service.name": "bot"},
                otlp_default_team="unused", otlp_default_user="unused")
    assert (got.org_id, got.team, got.user_id, got.app) == ("acme", "billing", "u-1", "bot")
    assert got.event_id == "0102030405060708090a0b0c0d0e0f10-0102030405060708" and got.latency_ms == 500


@pytest.mark.parametrize(("attributes", "span", "reason"), [
    ({**CALL, "gen_ai.usage.input_tokens": True}, None, "input_tokens (gen_ai.usage.input_tokens): "),
    ({**CALL, "gen_ai.usage.output_tokens": 2.0}, None, "output_tokens (gen_ai.usage.output_tokens): "),
    ({**CALL, "gen_ai.usage.cache_read.input_tokens": 11}, None, "cache_read_tokens"),  # more than the input
    (CALL, make_span(start_ns=time.time_ns() + 3600 * 10**9), "occurred_at (span start_time_unix_nano): "),
    (CALL, make_span(start_ns=0), "occurred_at (span start_time_unix_nano): "),
    ({k: v for k, v in CALL.items() if k != "gen_ai.provider.name"}, None,
     "provider: no gen_ai.provider.name or gen_ai.system attribute"),
])
def test_unusable_values_are_rejected_naming_the_attribute(attributes, span, reason):
    with pytest.raises(SpanRejected) as rejected:
        event(attributes, span=span)
    assert reason in str(rejected.value)


def test_an_array_where_a_name_or_count_belongs_is_rejected():
    model = KeyValue(key="gen_ai.request.model")
    model.value.array_value.values.add(string_value="gpt-4o")
    attributes = {k: v for k, v in CALL.items() if k != "gen_ai.request.model"} | _attributes([model])
    with pytest.raises(SpanRejected, match=r"request_model \(gen_ai.request.model\): Input should be a valid string"):
        event(attributes)


def test_a_failed_call_without_usage_is_kept_with_zero_tokens():
    attributes = {k: v for k, v in CALL.items() if "usage" not in k} | {"error.type": "timeout"}
    got = event(attributes, span=make_span(error=True))
    assert (got.status, got.error_type, got.input_tokens, got.output_tokens) == ("error", "timeout", 0, 0)


def test_decode_reads_otlp_json_hex_ids_and_refuses_what_is_not_otlp():
    body = (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",'
            b'"spanId":"eee19b7ec3c1b174","name":"x","attributes":[{"key":"n","value":{"intValue":"7"}}]}]}]}]}')
    request = decode(body, "application/json")
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c" and _attributes(span.attributes) == {"n": 7}
    assert decode(ExportTraceServiceRequest().SerializeToString(), "application/x-protobuf") == ExportTraceServiceRequest()
    for bad, content_type in [(b"[1]", "application/json"), (b"{", "application/json"),
                              (b"\xff\xff", "application/x-protobuf")]:
        with pytest.raises(BadRequest):
            decode(bad, content_type)
