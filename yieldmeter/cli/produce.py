"""`yieldmeter produce FILE.jsonl|-` and `yieldmeter normalize --provider P FILE.json`.

produce: one JSON event per line. Every line is validated against its contract; valid lines
are sent (keyed by session) with the SDK's producer, invalid ones are reported on stderr with
their line number and reason. Without --dead-letter the valid lines are still sent and the
exit code is 1 when any line was invalid (fix the lines and send just those again: event ids
make a re-send harmless). With --dead-letter each invalid line goes to the dead-letter topic
with its reason, nothing is left behind, and the exit code is 0. Blank lines are skipped.
A message the broker refuses always makes the exit code 1.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from enum import Enum
from pathlib import Path
from typing import BinaryIO

import typer
from pydantic_core import from_json
from rich.console import Console

from yieldmeter.cli.output import console, settings
from yieldmeter.contracts import ContractError, OutcomeEvent, explain
from yieldmeter.errors import YieldmeterError
from yieldmeter.normalize import (
    ADAPTERS,
    UsageFormatError,
    extract_usage,
    from_anthropic_stream,
    from_openai_stream,
    normalize_model,
    normalize_provider,
)
from yieldmeter.sdk import DeliveryError, UsageProducer, find_model, new_id

errors = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


class Kind(str, Enum):
    usage = "usage"
    outcome = "outcome"
    auto = "auto"


def produce(
    source: str = typer.Argument(..., metavar="FILE.jsonl|-", help="JSON Lines file, or - for stdin."),
    kind: Kind = typer.Option(
        Kind.usage, "--kind",
        help="usage: every line is a UsageEvent; outcome: an OutcomeEvent; "
        "auto: lines with a top-level outcome_id are outcomes, the others usage events.",
    ),
    dead_letter: bool = typer.Option(
        False, "--dead-letter", help="Send invalid lines to the dead-letter topic with their reason (exit 0)."
    ),
) -> None:
    """Validate and send usage events or outcomes from a JSON Lines file (or stdin) to Kafka."""
    config = settings()
    if source == "-":
        stream, origin = sys.stdin.buffer, f"stdin:{new_id()}"  # stdin has no identity: one per run
    else:
        path = Path(source).expanduser().resolve()
        try:
            stream, origin = open(path, "rb"), f"file:{path}"
        except OSError as error:
            raise YieldmeterError(f"cannot read {source}: {error.strerror}") from None

    client_log = logging.getLogger(UsageProducer.__module__)  # the SDK's logger
    client_log.setLevel(logging.ERROR)  # librdkafka's transient warnings (e.g. "retrying") are noise here
    producer = UsageProducer(config)
    try:
        producer.check()
    except YieldmeterError:
        client_log.setLevel(logging.CRITICAL)  # the error says it all: no librdkafka echo
        producer.close(0)
        raise
    counts = {"usage": 0, "outcome": 0, "invalid": 0, "refused": 0, "failed": 0}
    started = time.perf_counter()
    try:
        try:
            with stream:
                _send_lines(producer, stream, kind, counts, dead_letter, origin)
        finally:
            producer.close()  # what was queued is delivered, even after Ctrl-C
    except DeliveryError as error:
        counts["failed"] = len(error.failures)
        raise
    finally:
        _summary(config, kind, counts, dead_letter, started)
    if counts["refused"] or (counts["invalid"] and not dead_letter):
        raise typer.Exit(1)


def _send_lines(producer: UsageProducer, stream: BinaryIO, kind: Kind, counts: dict[str, int],
                dead_letter: bool, origin: str) -> None:
    # The hot loop: validation and serialisation are pydantic-core; keep Python work per line small.
    send_usage, send_outcome = producer.send_usage, producer.send_outcome
    usage = outcome = 0
    try:
        for number, line in enumerate(stream, 1):
            if line.isspace():
                continue
            try:
                if kind is Kind.outcome or (kind is Kind.auto and _is_outcome(line)):
                    send_outcome(line)
                    outcome += 1
                else:
                    send_usage(line)
                    usage += 1
            except ContractError as error:
                counts["invalid"] += 1
                reason = explain(error).replace("\n", "; ") + _kind_hint(kind, line)
                errors.print(f"line {number}: {reason}")
                if dead_letter:
                    target = producer.outcomes_topic if error.model is OutcomeEvent else producer.events_topic
                    producer.send_dead_letter(line.rstrip(b"\r\n"), reason, source_topic=origin, source_offset=number,
                                              line=number, target_topic=target)
            except DeliveryError as error:  # refused before sending, e.g. larger than message.max.bytes
                counts["refused"] += 1
                errors.print(f"line {number}: not sent: {error.failures[0].reason}")
    finally:
        counts["usage"], counts["outcome"] = usage, outcome


def _top_level(line: bytes) -> dict:
    try:
        data = from_json(line)
    except ValueError:
        return {}  # the contract reports the broken JSON
    return data if isinstance(data, dict) else {}


def _is_outcome(line: bytes) -> bool:
    return "outcome_id" in _top_level(line)


def _kind_hint(kind: Kind, line: bytes) -> str:
    data = _top_level(line)
    if kind is Kind.usage and "outcome_id" in data:
        return " (the line has an outcome_id: is it an outcome? use --kind outcome or --kind auto)"
    if kind is Kind.outcome and "event_id" in data:
        return " (the line has an event_id: is it a usage event? use --kind usage or --kind auto)"
    return ""


def _summary(config, kind: Kind, counts: dict[str, int], dead_letter: bool, started: float) -> None:
    elapsed = time.perf_counter() - started
    sent = counts["usage"] + counts["outcome"]
    parts = []
    if counts["usage"] or kind is not Kind.outcome:
        parts.append(f"{counts['usage']:,} usage events → {config.topic_events}")
    if counts["outcome"] or kind is not Kind.usage:
        parts.append(f"{counts['outcome']:,} outcomes → {config.topic_outcomes}")
    invalid = f"{counts['invalid']:,} invalid"
    if counts["invalid"] and dead_letter:
        invalid += f" (sent to {config.topic_dlq})"
    line = f"{', '.join(parts)}; {invalid}"
    if counts["refused"] or counts["failed"]:
        line += f"; [red]{counts['refused'] + counts['failed']:,} not delivered[/red]"
    console.print(f"{line}; {elapsed:.2f}s, {sent / elapsed if elapsed else 0:,.0f} events/s")


# --- normalize -------------------------------------------------------------------------------

_API_PROVIDER = {  # usage format -> OTel provider name, for model-id normalisation
    "openai.chat": "openai",
    "openai.responses": "openai",
    "anthropic.messages": "anthropic",
    "gemini": "gcp.gemini",
    "bedrock.converse": "aws.bedrock",
}
_STREAMS = {"openai.chat": from_openai_stream, "openai.responses": from_openai_stream,
            "anthropic.messages": from_anthropic_stream}


def normalize(
    source: str = typer.Argument(..., metavar="FILE.json|-", help="A provider response (or a JSON array of "
                                 "stream chunks for openai.* and anthropic.messages), or - for stdin."),
    provider: str = typer.Option(..., "--provider", help=f"Usage format: {', '.join(ADAPTERS)}."),
    model: str = typer.Option(None, "--model", help="Model id to normalise when the payload names none."),
) -> None:
    """Print a provider payload's token counts in yieldmeter's terms, and its normalised provider and model id."""
    if provider not in ADAPTERS:
        raise YieldmeterError(f"--provider {provider}: unknown usage format; known: {', '.join(ADAPTERS)}")
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise YieldmeterError(f"cannot read {source}: {error.strerror}") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise YieldmeterError(f"{source} is not JSON: {error}") from None
    try:
        if isinstance(payload, list):
            if provider not in _STREAMS:
                raise YieldmeterError(f"a JSON array is read as a stream, and {provider} has no stream format")
            usage = _STREAMS[provider](payload)
        else:
            usage = extract_usage(provider, payload)
    except UsageFormatError as error:
        raise YieldmeterError(f"{source}: {error}") from None
    result: dict = usage.as_event_fields()
    if found := model or find_model(payload):
        attrs = payload.get("attributes", {}) if isinstance(payload, dict) else {}
        name = _API_PROVIDER.get(provider) or attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")
        result["model"] = found
        if name:
            result["provider"] = name
            result["normalized_provider"] = normalize_provider(name)
            result["normalized_model"] = normalize_model(name, found)
    console.print_json(data=result)
