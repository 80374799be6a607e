"""The OTLP intake (`yieldmeter otlp`) with real clients: the OpenTelemetry SDK's OTLP/HTTP
exporter and encoder, opentelemetry-instrumentation-openai-v2 around the official openai
client (against a local fake OpenAI server: the real API cannot run here), OTLP/JSON and
gzip bodies over plain HTTP, the real broker, and once the Flink pipeline job."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.conftest import DEV_LIB, free_port, make_settings
from tests.kafka_helpers import consume_all
from yieldmeter.contracts import parse_usage
from yieldmeter.otlp import PATH, serving

pytestmark = pytest.mark.integration

RESOURCE = {"service.name": "helpdesk", "yieldmeter.org_id": "acme", "yieldmeter.team": "support"}
NOW_NS = time.time_ns() - 60 * 10**9


def _ns(seconds: float) -> int:
    return NOW_NS + int(seconds * 1e9)


@pytest.fixture
def intake(settings, new_topics):
    events, dlq = new_topics(2)
    config = settings.model_copy(update={
        "topic_events": events, "topic_dlq": dlq, "otlp_port": free_port(), "otlp_max_body_bytes": 64 * 1024})
    with serving(config) as server:
        yield SimpleNamespace(settings=config, url=f"http://127.0.0.1:{config.otlp_port}{PATH}", server=server)


def record_spans(build, resource=RESOURCE) -> list:
    """Spans made by the real SDK: ``build(tracer)`` starts and ends them."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("test"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def span(tracer, name: str, attributes: dict, start_s: float = 0, seconds: float = 1.5, error: bool = False):
    one = tracer.start_span(name, attributes=attributes, start_time=_ns(start_s))
    if error:
        one.set_status(Status(StatusCode.ERROR, "rate limited"))
    one.end(end_time=_ns(start_s + seconds))
    return one


def post(url: str, body: bytes, content_type: str, **headers: str):
    request = urllib.request.Request(url, body, {"Content-Type": content_type, **headers}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def events_on(settings, expected: int) -> dict:
    messages = consume_all(settings.bootstrap_servers, settings.topic_events, expected)
    events = [parse_usage(m.value()) for m in messages]
    return {e.event_id: e for e in events}


def dead_letters_on(settings, expected: int) -> list[dict]:
    return [json.loads(m.value()) for m in consume_all(settings.bootstrap_servers, settings.topic_dlq, expected)]


def event_id(one) -> str:
    return f"{one.context.trace_id:032x}-{one.context.span_id:016x}"


def test_sdk_exporter_spans_become_usage_events(intake):
    def build(tracer):
        span(tracer, "chat claude-sonnet-4-5", {
            "gen_ai.provider.name": "anthropic", "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5-20250929",
            "gen_ai.usage.input_tokens": 12098, "gen_ai.usage.cache_read.input_tokens": 10000,
            "gen_ai.usage.cache_creation.input_tokens": 2048, "gen_ai.usage.output_tokens": 503,
            "gen_ai.conversation.id": "ticket-99172", "user.id": "u-4821"})
        span(tracer, "chat o3-mini", {  # the deprecated names, user and team on the span
            "gen_ai.system": "openai", "gen_ai.request.model": "o3-mini", "gen_ai.usage.prompt_tokens": 75,
            "gen_ai.usage.completion_tokens": 1186, "gen_ai.usage.reasoning_tokens": 1024,
            "enduser.id": "u-7", "yieldmeter.team": "billing", "openai.response.service_tier": "flex"}, start_s=3)
        span(tracer, "chat gpt-4o", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                                     "user.id": "u-7", "error.type": "429"}, start_s=5, error=True)
        span(tracer, "embeddings text-embedding-3-small", {  # embeddings report no output tokens
            "gen_ai.provider.name": "openai", "gen_ai.operation.name": "embeddings", "user.id": "u-7",
            "gen_ai.request.model": "text-embedding-3-small", "gen_ai.usage.input_tokens": 512}, start_s=7)
        span(tracer, "GET /tickets", {"http.request.method": "GET"})
        span(tracer, "invoke_agent triage", {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai",
                                             "gen_ai.usage.input_tokens": 9999, "gen_ai.usage.output_tokens": 1})

    spans = record_spans(build)
    assert OTLPSpanExporter(endpoint=intake.url).export(spans) is SpanExportResult.SUCCESS

    events = events_on(intake.settings, 4)
    assert set(events) == {event_id(s) for s in spans[:4]}
    current, deprecated, failed, embeddings = (events[event_id(s)] for s in spans[:4])
    assert (current.org_id, current.team, current.user_id, current.app) == ("acme", "support", "u-4821", "helpdesk")
    assert (current.provider, current.request_model, current.response_model) == (
        "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929")
    assert (current.input_tokens, current.cache_read_tokens, current.cache_write_tokens, current.output_tokens) == (
        12098, 10000, 2048, 503)
    assert current.session_id == "ticket-99172" and current.trace_id == f"{spans[0].context.trace_id:032x}"
    assert current.occurred_at == datetime.fromtimestamp(spans[0].start_time // 10**6 / 1000, UTC)
    assert current.latency_ms == 1500 and current.status == "ok" and current.operation == "chat"
    assert (deprecated.provider, deprecated.team, deprecated.user_id, deprecated.service_tier) == (
        "openai", "billing", "u-7", "flex")
    assert (deprecated.input_tokens, deprecated.output_tokens, deprecated.reasoning_tokens) == (75, 1186, 1024)
    assert (failed.status, failed.error_type, failed.input_tokens, failed.output_tokens) == ("error", "429", 0, 0)
    assert (embeddings.operation, embeddings.input_tokens, embeddings.output_tokens) == ("embeddings", 512, 0)
    counts = intake.server.intake.counts
    assert (counts.spans, counts.events, counts.ignored, counts.dead_letters) == (6, 4, 2, 0)

    # A re-sent span is the same event (same id): the pipeline counts it once.
    assert OTLPSpanExporter(endpoint=intake.url).export(spans[:1]) is SpanExportResult.SUCCESS
    again = consume_all(intake.settings.bootstrap_servers, intake.settings.topic_events, 5)
    assert [parse_usage(m.value()).event_id for m in again].count(event_id(spans[0])) == 2


def test_unusable_genai_spans_are_dead_letters_with_their_reason(intake):
    def build(tracer):
        span(tracer, "no model", {"gen_ai.provider.name": "openai", "user.id": "u-1",
                                  "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2})
        span(tracer, "no tokens", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "user.id": "u-1"})
        span(tracer, "bad count", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "user.id": "u-1",
                                   "gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": -3})
        span(tracer, "fine", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "user.id": "u-1",
                              "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2})

    spans = record_spans(build)
    status, headers, body = post(intake.url, encode_spans(spans).SerializeToString(), "application/x-protobuf")
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(body)
    assert answer.partial_success.rejected_spans == 3
    assert intake.settings.topic_dlq in answer.partial_success.error_message

    letters = {d["reason"].split("'")[1]: d for d in dead_letters_on(intake.settings, 3)}
    assert set(letters) == {"no model", "no tokens", "bad count"}
    assert "request_model: no gen_ai.request.model or gen_ai.response.model attribute" in letters["no model"]["reason"]
    assert "input_tokens: no gen_ai.usage.input_tokens or gen_ai.usage.prompt_tokens" in letters["no tokens"]["reason"]
    assert "output_tokens: no gen_ai.usage.output_tokens" in letters["no tokens"]["reason"]
    assert "input_tokens (gen_ai.usage.input_tokens): " in letters["bad count"]["reason"]
    assert "output_tokens (gen_ai.usage.output_tokens): " in letters["bad count"]["reason"]
    assert set(letters["no model"]) == {"source_topic", "source_partition", "source_offset", "rejected_at", "reason",
                                        "payload"}
    assert letters["no model"]["source_topic"] == "otlp" and letters["no model"]["source_partition"] == -1

    # The payload is the span alone as an OTLP/JSON request: once fixed, it can be sent again.
    fixed = json.loads(letters["no model"]["payload"])
    fixed["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"].append(
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}})
    status, _, body = post(intake.url, json.dumps(fixed).encode(), "application/json")
    assert status == 200 and json.loads(body) == {}
    events = events_on(intake.settings, 2)
    assert set(events) == {event_id(spans[0]), event_id(spans[3])}


def test_org_and_user_come_from_settings_or_the_span_is_a_dead_letter(settings, new_topics):
    events, dlq = new_topics(2)
    resource = {"service.name": "batch-summariser"}
    spans = record_spans(lambda tracer: span(tracer, "chat", {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}), resource)
    base = {"topic_events": events, "topic_dlq": dlq}
    with serving(settings.model_copy(update=base | {"otlp_port": free_port()})) as server:
        url = f"http://127.0.0.1:{server.server_port}{PATH}"
        assert OTLPSpanExporter(endpoint=url).export(spans) is SpanExportResult.SUCCESS
    (letter,) = dead_letters_on(settings.model_copy(update=base), 1)
    for setting in ("YIELDMETER_OTLP_DEFAULT_ORG", "YIELDMETER_OTLP_DEFAULT_TEAM", "YIELDMETER_OTLP_DEFAULT_USER"):
        assert setting in letter["reason"]

    defaults = {"otlp_default_org": "acme", "otlp_default_team": "data", "otlp_default_user": "svc-batch"}
    with serving(settings.model_copy(update=base | defaults | {"otlp_port": free_port()})) as server:
        url = f"http://127.0.0.1:{server.server_port}{PATH}"
        assert OTLPSpanExporter(endpoint=url).export(spans) is SpanExportResult.SUCCESS
    (event,) = events_on(settings.model_copy(update=base), 1).values()
    assert (event.org_id, event.team, event.user_id, event.app) == ("acme", "data", "svc-batch", "batch-summariser")


def otlp_json(trace_id: str, span_id: str, attributes: dict) -> bytes:
    """An OTLP/JSON request as the specification spells it: hex ids, int64 as strings."""
    def value(v):
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}

    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": k, "value": value(v)} for k, v in RESOURCE.items()]},
        "scopeSpans": [{"scope": {"name": "collector"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "name": "chat gpt-4o", "kind": 3,
            "startTimeUnixNano": str(_ns(0)), "endTimeUnixNano": str(_ns(0.25)),
            "attributes": [{"key": k, "value": value(v)} for k, v in attributes.items()],
            "status": {}}]}]}]}).encode()


def test_json_and_gzip_bodies_and_the_refusals(intake):
    genai = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "user.id": "u-1",
             "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 20}
    trace = "5b8efff798038103d269b633813fc60c"
    status, headers, body = post(intake.url, otlp_json(trace, "eee19b7ec3c1b174", genai), "application/json")
    assert (status, headers["Content-Type"], json.loads(body)) == (200, "application/json", {})
    # gzip, as the Collector's otlphttp exporter sends by default
    zipped = gzip.compress(otlp_json(trace, "eee19b7ec3c1b175", genai))
    status, _, _ = post(intake.url, zipped, "application/json; charset=utf-8", **{"Content-Encoding": "gzip"})
    assert status == 200
    events = events_on(intake.settings, 2)
    assert set(events) == {f"{trace}-eee19b7ec3c1b174", f"{trace}-eee19b7ec3c1b175"}
    assert events[f"{trace}-eee19b7ec3c1b174"].latency_ms == 250

    limit = intake.settings.otlp_max_body_bytes
    status, _, body = post(intake.url, b"x" * (limit + 1), "application/x-protobuf")
    assert status == 413 and b"YIELDMETER_OTLP_MAX_BODY_BYTES" in body
    bomb = gzip.compress(b" " * (limit * 4))  # small on the wire, over the limit once inflated
    status, _, _ = post(intake.url, bomb, "application/json", **{"Content-Encoding": "gzip"})
    assert status == 413
    status, _, body = post(intake.url, b"hello", "text/plain")
    assert status == 415 and b"application/x-protobuf" in body
    status, _, body = post(intake.url, b"\xff\xff\xff\xff", "application/x-protobuf")
    assert status == 400
    status, headers, body = post(intake.url, b"{not json", "application/json")
    assert status == 400 and headers["Content-Type"] == "application/json" and json.loads(body)["code"] == 3
    status, _, _ = post(intake.url, otlp_json("zz" * 16, "eee19b7ec3c1b176", genai), "application/json")
    assert status == 400
    assert dict(intake.server.intake.counts.refused) == {413: 2, 415: 1, 400: 3}
    assert consume_all(intake.settings.bootstrap_servers, intake.settings.topic_dlq, 0, timeout_s=2) == []


def test_broker_down_is_503_with_retry_after_and_the_retry_loses_nothing(tmp_path):
    """No broker yet on the intake's bootstrap: 503 + Retry-After. Then a real broker starts
    there and the same request, sent again as an exporter would, is delivered."""
    from yieldmeter.kafka_local import LocalKafka
    from yieldmeter.topics import ensure_topics

    broker_settings = make_settings(tmp_path / "broker", kafka_port=free_port(), kafka_controller_port=free_port())
    settings = make_settings(tmp_path / "state", kafka_bootstrap=broker_settings.bootstrap_servers,
                             otlp_port=free_port(), lib_dir=DEV_LIB)
    spans = record_spans(lambda tracer: [span(tracer, f"chat {i}", {
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "user.id": "u-1",
        "gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": 5}, start_s=i) for i in range(20)])
    body = encode_spans(spans).SerializeToString()
    broker = LocalKafka(broker_settings)
    try:
        with serving(settings) as server:
            url = f"http://127.0.0.1:{server.server_port}{PATH}"
            status, headers, _ = post(url, body, "application/x-protobuf")
            assert status == 503 and int(headers["Retry-After"]) > 0
            broker.start()
            ensure_topics(settings)
            deadline = time.monotonic() + 120
            while status != 200 and time.monotonic() < deadline:
                time.sleep(int(headers["Retry-After"]))
                status, headers, _ = post(url, body, "application/x-protobuf")
            assert status == 200
        events = events_on(settings, 20)  # the first attempt's messages may land too: same ids
        assert set(events) == {event_id(s) for s in spans}
    finally:
        broker.stop()


# --- the openai client, instrumented, against a fake OpenAI server --------------------------------

USAGE = {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280,
         "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 0}}


class FakeOpenAI(BaseHTTPRequestHandler):
    """POST /v1/chat/completions answered as the OpenAI API answers, usage included."""

    def do_POST(self):  # noqa: N802
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({
            "id": f"chatcmpl-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
            "model": f"{request['model']}-2024-07-18", "service_tier": "default",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Your ticket is resolved."}}],
            "usage": USAGE}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def instrumented_openai_calls(intake_url: str, calls: int) -> None:
    import openai
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    fake = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=intake_url)))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{fake.server_port}/v1", api_key="test", max_retries=0)
        for i in range(calls):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"ticket {i}"}])
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
        fake.shutdown()


@pytest.mark.e2e
def test_openai_instrumentation_spans_become_priced_calls(kafka, tmp_path):
    """The spans opentelemetry-instrumentation-openai-v2 emits for real openai client calls go
    through the intake and the Flink pipeline job and come out priced as the reference prices them."""
    from tests.e2e.workload import fresh_topic_settings
    from yieldmeter.normalize import normalize_model, normalize_provider
    from yieldmeter.pipeline_jobs import run_pipeline
    from yieldmeter.prices import build_catalog, price_for, publish
    from yieldmeter.topics import ensure_topics

    settings = fresh_topic_settings(make_settings(tmp_path, kafka_bootstrap=kafka.bootstrap_servers,
                                                  otlp_port=free_port(), otlp_default_user="svc-helpdesk"))
    ensure_topics(settings)
    catalog = build_catalog()
    publish(catalog, settings)
    with serving(settings) as server:
        instrumented_openai_calls(f"http://127.0.0.1:{server.server_port}{PATH}", calls=3)
        counts = server.intake.counts
    assert (counts.events, counts.dead_letters) == (3, 0)

    events = events_on(settings, 3)
    for event in events.values():
        assert (event.provider, event.request_model, event.response_model) == (
            "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
        assert (event.input_tokens, event.output_tokens) == (1200, 80)
        assert (event.org_id, event.team, event.user_id, event.app) == ("acme", "support", "svc-helpdesk", "helpdesk")
        assert datetime.now(UTC) - event.occurred_at < timedelta(minutes=10)

    run_pipeline(settings, timeout_s=600, group_id=f"pipeline-{settings.topic_events}")
    priced = [json.loads(m.value()) for m in consume_all(settings.bootstrap_servers, settings.topic_priced, 3)]
    assert {p["event_id"] for p in priced} == set(events)
    by_model = defaultdict(list)
    for record in catalog.prices.values():
        by_model[(record.provider, record.model)].append(record)
    for row in priced:
        event = events[row["event_id"]]
        provider = normalize_provider(event.provider)
        model = normalize_model(provider, event.response_model)
        record = price_for(by_model[(provider, model)], provider, model, event.service_tier, event.occurred_at)
        assert record is not None, model
        assert (row["pricing_status"], row["price_id"]) == ("priced", record.price_id)
        assert Decimal(row["list_cost_usd"]) == record.cost_usd(event) > 0


def test_the_command_serves_until_stopped_and_says_what_it_did(settings, new_topics, tmp_path):
    events, outcomes, dlq = new_topics(3)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIELDMETER_")} | {
        "YIELDMETER_KAFKA_BOOTSTRAP": settings.bootstrap_servers, "YIELDMETER_OTLP_PORT": str(port),
        "YIELDMETER_TOPIC_EVENTS": events, "YIELDMETER_TOPIC_OUTCOMES": outcomes, "YIELDMETER_TOPIC_DLQ": dlq,
        "YIELDMETER_OTLP_DEFAULT_USER": "svc-1", "YIELDMETER_STATE_DIR": str(tmp_path / "state")}
    process = subprocess.Popen([sys.executable, "-m", "yieldmeter", "otlp"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        spans = record_spans(lambda tracer: [
            span(tracer, "chat", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                                  "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}),
            span(tracer, "GET /", {"http.request.method": "GET"})])
        exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}{PATH}", timeout=30)
        deadline = time.monotonic() + 60
        while (result := exporter.export(spans)) is not SpanExportResult.SUCCESS and time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.5)  # not listening yet
        assert result is SpanExportResult.SUCCESS
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"127.0.0.1:{port}{PATH}" in output
    assert "2 spans -> 1 events, 0 dead letters, 1 ignored" in output
    (event,) = events_on(settings.model_copy(update={"topic_events": events}), 1).values()
    assert event.event_id == event_id(spans[0]) and event.user_id == "svc-1"


def test_the_command_names_the_fix_when_a_topic_is_missing(settings, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIELDMETER_")} | {
        "YIELDMETER_KAFKA_BOOTSTRAP": settings.bootstrap_servers, "YIELDMETER_OTLP_PORT": str(free_port()),
        "YIELDMETER_TOPIC_EVENTS": "test.no-such-topic", "YIELDMETER_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run([sys.executable, "-m", "yieldmeter", "otlp"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    assert "test.no-such-topic" in result.stdout and "yieldmeter topics" in result.stdout
