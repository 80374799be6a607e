"""OTLP intake throughput: GenAI spans/s through one `yieldmeter otlp` process.

    .venv/bin/python benchmarks/bench_otlp.py [SPANS]      (default 100000)

Uses the brokers in YIELDMETER_KAFKA_BOOTSTRAP, else starts a local KRaft broker (see
support.py). `yieldmeter otlp` runs as its own process; two client threads POST pre-encoded
protobuf export requests of 512 spans (the OpenTelemetry SDK's default batch; one span in ten
is an HTTP span the intake ignores) over keep-alive connections, as exporters do. Figures: spans/s
from the first request to the last 200 (every event acknowledged by the broker), spans per
CPU-second of the intake process, its peak resident memory; and, as the baseline in the same
run, the SDK's UsageProducer sending the same calls as pre-built events from this process.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import bench_settings, free_port, status_kb  # noqa: E402

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import KeyValue  # noqa: E402

from yieldmeter.config import Settings  # noqa: E402
from yieldmeter.otlp import PATH, is_model_call, span_to_event, _attributes  # noqa: E402
from yieldmeter.sdk import UsageProducer  # noqa: E402
from yieldmeter.topics import admin_client, create_topics  # noqa: E402

BATCH = 512
CLIENTS = 2


def _kv(key: str, value) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value
    return kv


def make_requests(spans: int) -> list[bytes]:
    models = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), ("gcp.gemini", "gemini-2.5-flash")]
    start = time.time_ns() - 3600 * 10**9
    bodies = []
    for first in range(0, spans, BATCH):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend([
            _kv("service.name", "helpdesk"), _kv("yieldmeter.org_id", "acme"), _kv("yieldmeter.team", "support")])
        scope = resource_spans.scope_spans.add()
        for i in range(first, min(first + BATCH, spans)):
            span = scope.spans.add(trace_id=uuid.uuid4().bytes, span_id=uuid.uuid4().bytes[:8], name="chat",
                                   start_time_unix_nano=start + i * 10**6, end_time_unix_nano=start + i * 10**6 + 8 * 10**8)
            if i % 10 == 9:
                span.attributes.extend([_kv("http.request.method", "GET"), _kv("url.path", "/tickets")])
                continue
            provider, model = models[i % 3]
            span.attributes.extend([
                _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.provider.name", provider),
                _kv("gen_ai.request.model", model), _kv("gen_ai.response.model", model),
                _kv("gen_ai.usage.input_tokens", 1000 + i % 7000), _kv("gen_ai.usage.output_tokens", 50 + i % 1500),
                _kv("gen_ai.usage.cache_read.input_tokens", i % 900), _kv("user.id", f"user-{i % 500}"),
                _kv("gen_ai.conversation.id", f"s-{i % 5000}")])
        bodies.append(request.SerializeToString())
    return bodies


def wait_listening(port: int, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"yieldmeter otlp exited: {process.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("yieldmeter otlp did not listen in time")


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def post_all(port: int, bodies: list[bytes]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for body in bodies:
        connection.request("POST", PATH, body, {"Content-Type": "application/x-protobuf"})
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise SystemExit(f"intake answered {answer.status}")
    connection.close()


def bench_intake(settings: Settings, bodies: list[bytes], spans: int) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("YIELDMETER_")} | {
        "YIELDMETER_KAFKA_BOOTSTRAP": settings.bootstrap_servers, "YIELDMETER_STATE_DIR": str(settings.state_path),
        "YIELDMETER_OTLP_PORT": str(port), "YIELDMETER_TOPIC_EVENTS": settings.topic_events,
        "YIELDMETER_TOPIC_DLQ": settings.topic_dlq, "YIELDMETER_TOPIC_OUTCOMES": settings.topic_outcomes}
    process = subprocess.Popen([sys.executable, "-m", "yieldmeter", "otlp"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, process)
        cpu0, t0 = cpu_seconds_of(process.pid), time.perf_counter()
        threads = [threading.Thread(target=post_all, args=(port, bodies[i::CLIENTS])) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds, cpu = time.perf_counter() - t0, cpu_seconds_of(process.pid) - cpu0
        peak_mb = status_kb(process.pid, "VmHWM:") / 1024
    finally:
        process.terminate()
        process.wait(30)
    print(f"yieldmeter otlp:      {spans:>9,} spans in {seconds:6.2f}s = {spans / seconds:>9,.0f} spans/s; "
          f"{spans / cpu:>9,.0f} spans per CPU-second of the intake; peak RSS {peak_mb:,.0f} MB")


def bench_baseline(settings: Settings, bodies: list[bytes], spans: int) -> None:
    """The same calls as UsageEvents, built beforehand, sent straight with the SDK's producer."""
    events = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for span in resource_spans.scope_spans[0].spans:
                attributes = _attributes(span.attributes)
                if is_model_call(attributes):
                    events.append(span_to_event(span, attributes, resource, settings))
    cpu0, t0 = time.process_time(), time.perf_counter()
    with UsageProducer(settings) as producer:
        for event in events:
            producer.send_usage(event)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(f"baseline (SDK send):  {len(events):>9,} events in {seconds:6.2f}s = {len(events) / seconds:>9,.0f} events/s; "
          f"{len(events) / cpu:>9,.0f} events per CPU-second (pre-built events, no HTTP, no decoding)")


def main() -> None:
    spans = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    bodies = make_requests(spans)
    print(f"{len(bodies)} requests of up to {BATCH} spans, {sum(map(len, bodies)) / 2**20:.1f} MiB of protobuf; "
          f"{CLIENTS} client threads, keep-alive")
    with bench_settings("ym-bench-otlp-") as base:
        run = uuid.uuid4().hex[:8]
        settings = base.model_copy(update={f"topic_{k}": f"bench.{run}.{k}" for k in ("events", "outcomes", "dlq")})
        settings_base = base.model_copy(update={"topic_events": f"bench.{run}.baseline"})
        create_topics(admin_client(settings), {t: {"partitions": 4, "config": {}} for t in (
            settings.topic_events, settings.topic_outcomes, settings.topic_dlq, settings_base.topic_events)})
        bench_intake(settings, bodies, spans)
        bench_baseline(settings_base, bodies, spans)


if __name__ == "__main__":
    main()
