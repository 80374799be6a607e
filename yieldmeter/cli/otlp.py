"""`yieldmeter otlp`: the OTLP/HTTP intake for OpenTelemetry GenAI spans (yieldmeter/otlp.py)."""

from __future__ import annotations

import threading

from yieldmeter.cli.output import console, settings
from yieldmeter.otlp import PATH, serving
from yieldmeter.runner import _stop_on_signals


def otlp() -> None:
    """Accept OpenTelemetry GenAI spans over OTLP/HTTP and send them to Kafka as usage events."""
    config = settings()
    stop = threading.Event()
    with serving(config) as server, _stop_on_signals(stop):
        server.intake.producer.check()  # fail now, with the fix, when the broker or a topic is missing
        console.print(f"OTLP intake on http://{config.otlp_host}:{config.otlp_port}{PATH} "
                      f"-> {config.topic_events} (dead letters -> {config.topic_dlq}); Ctrl-C stops it.")
        while not stop.wait(1.0):
            pass
        counts = server.intake.counts
    console.print(f"Stopped: {counts.requests:,} requests, {counts.spans:,} spans -> {counts.events:,} events, "
                  f"{counts.dead_letters:,} dead letters, {counts.ignored:,} ignored (not model calls)"
                  + (f"; refused: {dict(counts.refused)}" if counts.refused else "") + ".")
