"""OTLP/HTTP trace intake: OpenTelemetry GenAI spans become UsageEvents on usage.events.

Apps already instrumented with OpenTelemetry GenAI (opentelemetry-instrumentation-openai-v2,
OpenLIT, OpenLLMetry ...) or an OpenTelemetry Collector POST their traces to /v1/traces
(protobuf or JSON, optionally gzip). Every span is one of:

- a model call (a gen_ai.* model, provider or usage attribute, and an operation that is not
  invoke_agent / create_agent / execute_tool): a UsageEvent, or, when it cannot be used
  (no model, no token counts, a bad value), a dead letter on usage.dlq with the reason and
  the span itself as an OTLP JSON request (POST it again once fixed);
- anything else (HTTP, database, agent and tool spans): ignored and counted. Agent spans are
  skipped on purpose: their usage, when present, sums their child calls and would count twice.

The mapping (span attribute first, then resource attribute, then setting) is MAPPING below
and the README's "OpenTelemetry GenAI spans" section. event_id is ``<trace id>-<span id>``, so
a re-sent span is a duplicate the pipeline counts once.

Delivery: a request is answered 200 only after the broker has acknowledged every event and
dead letter it produced; otherwise 503 with Retry-After, and the exporter sends the request
again (duplicates are harmless, see above). Requests go through the producer one at a time so
a failed delivery is known to belong to the request being answered.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status
from pydantic import ValidationError

from yieldmeter.config import Settings
from yieldmeter.contracts import UsageEvent, explain
from yieldmeter.errors import YieldmeterError
from yieldmeter.sdk import UsageProducer

log = logging.getLogger(__name__)

PATH = "/v1/traces"
SOURCE = "otlp"
"""source_topic of the intake's dead letters: they come from an HTTP request, not a topic."""
PROTOBUF, JSON = "application/x-protobuf", "application/json"
RETRY_AFTER_S = 5
DELIVERY_TIMEOUT_S = 5.0
"""How long a request waits for the broker's acknowledgements; under the OTLP exporters'
default 10 s timeout, so the exporter hears 503 and retries instead of timing out."""
PRODUCER_CONFIG = {"message.timeout.ms": 30_000, "linger.ms": 5}
"""Undeliverable messages fail after 30 s instead of librdkafka's 5 minutes, so a long broker
outage cannot fill the local queue with spans the exporter is re-sending anyway."""

# UsageEvent field -> attribute names, first found wins; looked up on the span, then on its resource.
MAPPING: dict[str, tuple[str, ...]] = {
    "org_id": ("yieldmeter.org_id",),
    "team": ("yieldmeter.team",),
    "user_id": ("user.id", "enduser.id"),
    "app": ("yieldmeter.app", "service.name"),
    "feature": ("yieldmeter.feature",),
    "provider": ("gen_ai.provider.name", "gen_ai.system"),
    "request_model": ("gen_ai.request.model", "gen_ai.response.model"),
    "response_model": ("gen_ai.response.model",),
    "operation": ("gen_ai.operation.name",),
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    "cache_read_tokens": ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"),
    "cache_write_tokens": ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens"),
    "reasoning_tokens": ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens"),
    "service_tier": ("openai.response.service_tier",),
    "session_id": ("gen_ai.conversation.id", "session.id"),
    "error_type": ("error.type",),
}
DEFAULT_SETTING = {"org_id": "otlp_default_org", "team": "otlp_default_team", "user_id": "otlp_default_user"}
CALL_MARKERS = frozenset(
    MAPPING["provider"] + MAPPING["request_model"] + MAPPING["input_tokens"] + MAPPING["output_tokens"]
)
NOT_CALLS = frozenset({"invoke_agent", "create_agent", "execute_tool"})
TOKENS_OPTIONAL_ON_ERROR = ("input_tokens", "output_tokens")
"""A failed call often has no usage; it is kept with 0 tokens (it counts as error waste), not dead-lettered."""
NO_OUTPUT_OPERATIONS = frozenset({"embeddings"})
"""Operations whose spans carry no output token count: 0, not a dead letter."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SpanRejected(ValueError):
    """A model-call span that cannot become a UsageEvent; the message is the dead letter's reason."""


@dataclass
class Counts:
    """What the intake has done since it started."""

    requests: int = 0
    spans: int = 0
    events: int = 0
    dead_letters: int = 0
    ignored: int = 0  # not model calls
    refused: Counter = field(default_factory=Counter)  # HTTP status -> requests answered with it


_SCALARS = frozenset({"string_value", "int_value", "bool_value", "double_value"})


class _NotScalar:
    """An array, map or bytes attribute: never a usable name or count, so validation rejects it."""

    def __init__(self, kind: str | None):
        self.kind = kind or "empty"

    def __repr__(self) -> str:
        return f"<{self.kind}>"


def _attributes(key_values: Any) -> dict[str, Any]:
    out = {}
    for kv in key_values:  # a loop, not a helper per value: this runs for every attribute of every span
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind in _SCALARS else _NotScalar(kind)
    return out


def _lookup(name: str, span: Mapping[str, Any], resource: Mapping[str, Any]) -> tuple[str | None, Any]:
    for attributes in (span, resource):
        for key in MAPPING[name]:
            if key in attributes:
                return key, attributes[key]
    return None, None


def is_model_call(attributes: Mapping[str, Any]) -> bool:
    if attributes.get("gen_ai.operation.name") in NOT_CALLS:
        return False
    return not CALL_MARKERS.isdisjoint(attributes)


def span_to_event(span: Span, span_attributes: Mapping[str, Any], resource: Mapping[str, Any],
                  settings: Settings) -> UsageEvent:
    """The UsageEvent of one model-call span, or SpanRejected naming each attribute and problem."""
    trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
    failed = span.status.code == Status.STATUS_CODE_ERROR
    values: dict[str, Any] = {}
    source: dict[str, str] = {}  # field -> where its value came from, for the reason
    problems = []
    for name in MAPPING:
        key, value = _lookup(name, span_attributes, resource)
        if key is None and name in DEFAULT_SETTING:
            value = getattr(settings, DEFAULT_SETTING[name])
            key = f"YIELDMETER_{DEFAULT_SETTING[name].upper()}"
        if value is None:
            if name in DEFAULT_SETTING:
                problems.append(f"{name}: no {' or '.join(MAPPING[name])} attribute on the span or its resource, "
                                f"and YIELDMETER_{DEFAULT_SETTING[name].upper()} is unset")
            elif name in TOKENS_OPTIONAL_ON_ERROR and failed or (
                    name == "output_tokens" and values.get("operation") in NO_OUTPUT_OPERATIONS):
                values[name] = 0
            elif name in ("provider", "request_model", "input_tokens", "output_tokens"):
                problems.append(f"{name}: no {' or '.join(MAPPING[name])} attribute")
            continue
        values[name], source[name] = value, key
    if problems:
        raise SpanRejected("; ".join(problems))
    if not trace_id.strip("0") or not span_id.strip("0"):
        raise SpanRejected(f"span has no trace id or span id (trace_id {trace_id!r}, span_id {span_id!r})")
    values.update(
        event_id=f"{trace_id}-{span_id}",
        occurred_at=_EPOCH + timedelta(microseconds=span.start_time_unix_nano // 1000),
        trace_id=trace_id,
        latency_ms=(span.end_time_unix_nano - span.start_time_unix_nano) // 1_000_000 if span.end_time_unix_nano else None,
        status="error" if failed else "ok",
        attributes={"otel.span_name": span.name[:1024]},
    )
    source.update(occurred_at="span start_time_unix_nano", latency_ms="span end - start time")
    try:
        return UsageEvent.__pydantic_validator__.validate_python(values)
    except ValidationError as error:
        lines = []
        for line in explain(error).splitlines():
            name, _, rule = line.partition(": ")
            where = source.get(name.split(".")[0])
            lines.append(f"{name} ({where}): {rule}" if where else line)
        raise SpanRejected("; ".join(lines)) from None


# --- request bodies ------------------------------------------------------------------------------


class BadRequest(ValueError):
    """The body is not an OTLP trace export request; the message says why (answered with 400)."""


def _hex_ids_to_base64(request: Any) -> None:
    # OTLP/JSON spells trace and span ids in hex, protobuf's JSON mapping expects base64.
    def fix(holder: dict, *keys: str) -> None:
        for key in keys:
            value = holder.get(key)
            if isinstance(value, str) and value and len(value) in (16, 32):
                try:
                    holder[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise BadRequest(f"{key} {value!r} is not hex (OTLP/JSON spells ids in hex)") from None

    for resource_spans in request.get("resourceSpans") or request.get("resource_spans") or ():
        for scope_spans in resource_spans.get("scopeSpans") or resource_spans.get("scope_spans") or ():
            for span in scope_spans.get("spans") or ():
                fix(span, "traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")
                for link in span.get("links") or ():
                    fix(link, "traceId", "trace_id", "spanId", "span_id")


def decode(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        if content_type == PROTOBUF:
            request.ParseFromString(body)
        else:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise BadRequest("an OTLP/JSON body is a JSON object with resourceSpans")
            _hex_ids_to_base64(data)
            json_format.ParseDict(data, request, ignore_unknown_fields=True)  # OTLP: ignore unknown fields
    except (DecodeError, json_format.ParseError, ValueError) as error:
        if isinstance(error, BadRequest):
            raise
        raise BadRequest(f"not an OTLP ExportTraceServiceRequest ({content_type}): {error}") from None
    return request


def dead_letter_payload(resource_spans: ResourceSpans, scope_spans: Any, span: Span) -> bytes:
    """The span alone, as an OTLP/JSON export request with hex ids: re-POSTable once fixed."""
    one = ExportTraceServiceRequest()
    target = one.resource_spans.add(resource=resource_spans.resource, schema_url=resource_spans.schema_url)
    target.scope_spans.add(scope=scope_spans.scope, schema_url=scope_spans.schema_url).spans.append(span)
    data = json_format.MessageToDict(one)
    for holder in data["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in holder:
                holder[key] = base64.b64decode(holder[key]).hex()
    return json.dumps(data, separators=(",", ":")).encode()


# --- the intake ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


def _status_body(code: int, message: str, content_type: str) -> bytes:
    """A google.rpc.Status (code, message), as OTLP wants for every 4xx/5xx body. Encoded by hand:
    two fields do not justify googleapis-common-protos in the application."""
    if content_type == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    length, varint = len(text), bytearray()
    while True:
        varint.append((length & 0x7F) | (0x80 if length > 0x7F else 0))
        length >>= 7
        if not length:
            break
    return bytes([0x08, code]) + b"\x12" + bytes(varint) + text  # field 1 varint (code < 128), field 2 bytes


# google.rpc.Code for each HTTP answer other than 200
_RPC_CODE = {400: 3, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 503: 14}


class OtlpIntake:
    """Turns OTLP export requests into UsageEvents and dead letters (see the module docstring)."""

    def __init__(self, settings: Settings, producer: UsageProducer | None = None):
        self.settings = settings
        self.producer = producer or UsageProducer(settings, config=PRODUCER_CONFIG)
        self.counts = Counts()
        self._lock = threading.Lock()

    def error(self, status: int, message: str, content_type: str = PROTOBUF, **headers: str) -> Answer:
        self.counts.refused[status] += 1
        content_type = content_type if content_type in (PROTOBUF, JSON) else PROTOBUF
        return Answer(status, _status_body(_RPC_CODE.get(status, 2), message, content_type), content_type,
                      tuple(headers.items()))

    def export(self, body: bytes, content_type: str) -> Answer:
        """Answer one POST /v1/traces whose body is already decompressed."""
        try:
            request = decode(body, content_type)
        except BadRequest as error:
            return self.error(400, str(error), content_type)
        # Converted outside the lock: one request's spans are decoded while another waits for acks.
        events: list[UsageEvent] = []
        dead_letters: list[tuple[bytes, str, int]] = []
        ignored = 0
        reasons: Counter[str] = Counter()
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for index, span in enumerate(scope_spans.spans):
                    attributes = _attributes(span.attributes)
                    if not is_model_call(attributes):
                        ignored += 1
                        continue
                    try:
                        events.append(span_to_event(span, attributes, resource, self.settings))
                    except SpanRejected as rejected:
                        reason = f"OTLP span '{span.name[:200]}': {rejected}"
                        dead_letters.append((dead_letter_payload(resource_spans, scope_spans, span), reason, index))
                        reasons[str(rejected)] += 1
        dead = len(dead_letters)
        with self._lock:
            try:
                for event in events:
                    self.producer.send_usage(event)
                for payload, reason, index in dead_letters:
                    self.producer.send_dead_letter(payload, reason, source_topic=SOURCE, source_offset=index)
                self.producer.flush(DELIVERY_TIMEOUT_S)
            except YieldmeterError as error:  # DeliveryError: the broker did not take everything in time
                log.warning("OTLP request not delivered, answering 503: %s", error)
                return self.error(503, f"Kafka did not acknowledge the spans in time; retry ({error})"[:1000],
                                  content_type, **{"Retry-After": str(RETRY_AFTER_S)})
            counts = self.counts
            counts.requests += 1
            counts.spans += len(events) + dead + ignored
            counts.events += len(events)
            counts.dead_letters += dead
            counts.ignored += ignored
        response = ExportTraceServiceResponse()
        if dead:
            response.partial_success.rejected_spans = dead
            top = "; ".join(f"{n}x {reason}" for reason, n in reasons.most_common(3))
            response.partial_success.error_message = (
                f"{dead} GenAI span(s) rejected, sent to {self.settings.topic_dlq} with the reason: {top}")[:2000]
        if content_type == JSON:
            return Answer(200, json_format.MessageToJson(response, indent=None).encode(), JSON)
        return Answer(200, response.SerializeToString(), PROTOBUF)

    def close(self) -> None:
        self.producer.close(DELIVERY_TIMEOUT_S)


# --- HTTP ----------------------------------------------------------------------------------------


def _gunzip(body: bytes, limit: int) -> bytes:
    # Bounded: a small gzip body must not inflate past the size limit (a "zip bomb").
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise OverflowError
    if not inflater.eof:
        raise gzip.BadGzipFile("truncated gzip body")
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: exporters reuse their connection
    intake: OtlpIntake
    max_body: int

    def _answer(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
        intake = self.intake
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        answer_type = content_type if content_type in (PROTOBUF, JSON) else PROTOBUF
        if self.path.split("?")[0] != PATH:
            self.close_connection = True
            return self._answer(intake.error(404, f"only {PATH} is served here", answer_type))
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True  # a chunked or unsized body cannot be bounded before reading
            return self._answer(intake.error(411, "send a Content-Length", answer_type))
        if int(length) > self.max_body:
            self.close_connection = True  # the body is left unread
            return self._answer(intake.error(
                413, f"body of {length} bytes is over the limit of {self.max_body} (YIELDMETER_OTLP_MAX_BODY_BYTES); "
                "send smaller batches", answer_type))
        body = self.rfile.read(int(length))
        if content_type not in (PROTOBUF, JSON):
            return self._answer(intake.error(
                415, f"Content-Type {content_type or '(none)'} is not OTLP: send {PROTOBUF} or {JSON}", PROTOBUF))
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                body = _gunzip(body, self.max_body)
            except OverflowError:
                return self._answer(intake.error(
                    413, f"body inflates past the limit of {self.max_body} bytes (YIELDMETER_OTLP_MAX_BODY_BYTES)",
                    content_type))
            except (zlib.error, gzip.BadGzipFile) as error:
                return self._answer(intake.error(400, f"body is not valid gzip: {error}", content_type))
        elif encoding != "identity":
            return self._answer(intake.error(415, f"Content-Encoding {encoding} is not supported: use gzip or none",
                                             content_type))
        self._answer(intake.export(body, content_type))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("otlp %s: " + format, self.address_string(), *args)


def make_server(settings: Settings, intake: OtlpIntake | None = None) -> ThreadingHTTPServer:
    """The HTTP server, bound and ready for serve_forever().

    The standard library's ThreadingHTTPServer: the intake serves one POST route on localhost
    (a Collector in front does TLS and auth), so a framework would add dependencies to the app
    environment and nothing this needs; threads decode requests side by side while delivery
    goes one request at a time anyway (see the module docstring)."""
    intake = intake or OtlpIntake(settings)
    handler = type("OtlpHandler", (_Handler,), {"intake": intake, "max_body": settings.otlp_max_body_bytes})
    try:
        server = ThreadingHTTPServer((settings.otlp_host, settings.otlp_port), handler)
    except OSError as error:
        intake.close()
        raise YieldmeterError(
            f"Cannot listen on {settings.otlp_host}:{settings.otlp_port} for OTLP ({error.strerror}); "
            "stop what uses the port or set YIELDMETER_OTLP_PORT."
        ) from None
    server.daemon_threads = True
    server.intake = intake  # type: ignore[attr-defined]
    return server


@contextmanager
def serving(settings: Settings) -> Iterator[ThreadingHTTPServer]:
    """The intake serving in a background thread; on exit it stops and flushes what it produced.

    It serves even while the broker is not up yet (`yieldmeter run` starts it): until then
    requests are answered 503 and the exporters retry."""
    intake = OtlpIntake(settings)
    server = make_server(settings, intake)
    thread = threading.Thread(target=server.serve_forever, name="otlp-intake", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        try:
            intake.close()
        except YieldmeterError as error:  # their requests were answered 503: the exporters send them again
            log.warning("OTLP intake stopped with undelivered messages: %s", error)
