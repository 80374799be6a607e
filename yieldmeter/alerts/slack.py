"""Slack: Block Kit messages for notices, and delivery through an Incoming Webhook.

Messages are built from slack_sdk's Block Kit models, whose validators enforce Slack's
limits (header ≤ 150 characters, section text ≤ 3000, ≤ 10 fields); long text is cut to
fit before it reaches them. Delivery uses slack_sdk's WebhookClient with its retry
handlers: connection errors and 500/503 back off exponentially, a 429 waits for its
Retry-After (when that is longer than max_retry_after_seconds the attempt fails and a
later cycle retries it). Webhook URLs never appear in results or errors.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr
from slack_sdk.http_retry import (
    BackoffRetryIntervalCalculator, ConnectionErrorRetryHandler, HttpRequest, HttpResponse, Jitter,
    RateLimitErrorRetryHandler, RetryHandler, RetryState,
)
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.models.blocks import (
    Block, ContextBlock, HeaderBlock, MarkdownTextObject, PlainTextObject, SectionBlock,
)
from slack_sdk.webhook import WebhookClient

from yieldmeter.alerts.config import DeliverySpec
from yieldmeter.alerts.model import Event, Notice, Severity, format_change, format_value

HEADER_MAX, SECTION_MAX, FIELD_MAX, FIELDS_MAX = 150, 3000, 2000, 10

# slack_sdk logs the webhook URL at DEBUG and each failure at ERROR; we report failures
# ourselves (without the URL), so its logger stays silent whatever the root level is.
_SDK_LOGGER = logging.getLogger("yieldmeter.alerts.webhook")
_SDK_LOGGER.setLevel(logging.CRITICAL + 1)
_SDK_LOGGER.propagate = False

ICON = {Severity.CRITICAL: ":rotating_light:", Severity.WARNING: ":warning:"}
PREFIX = {Event.OPENED: "", Event.WORSENED: "Worse: ", Event.REPEATED: "Still firing: ", Event.RESOLVED: "Resolved: "}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _duration(start: datetime, end: datetime) -> str:
    minutes = max(int((end - start).total_seconds() // 60), 0)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def headline(notice: Notice) -> str:
    icon = ":white_check_mark:" if notice.event is Event.RESOLVED else ICON[notice.severity]
    return _cut(f"{icon} {PREFIX[notice.event]}{notice.title}", HEADER_MAX)


def numbers(notice: Notice) -> list[tuple[str, str]]:
    """The evidence as (label, value) pairs, in the order people read them."""
    pairs = [
        ("Value", format_value(notice.value, notice.unit)),
        ("Baseline", format_value(notice.baseline, notice.unit)),
        ("Threshold", format_value(notice.threshold, notice.unit)),
        ("Change", format_change(notice.value, notice.baseline)),
        ("Severity", notice.severity.value),
    ]
    return pairs + list(notice.details.items())


def build_message(notice: Notice) -> dict:
    """The webhook payload: fallback text plus header, summary, numbers, context, query."""
    if notice.event is Event.RESOLVED:
        summary = (
            f"No longer breaching as of {_when(notice.evaluated_at)}; open for "
            f"{_duration(notice.opened_at, notice.evaluated_at)} (since {_when(notice.opened_at)}). "
            f"Last alerted: *{format_value(notice.value, notice.unit)}* against a baseline of "
            f"*{format_value(notice.baseline, notice.unit)}*."
        )
    else:
        summary = notice.summary or f"*{format_value(notice.value, notice.unit)}* against a baseline of " \
            f"*{format_value(notice.baseline, notice.unit)}*."
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=headline(notice), emoji=True)),
        SectionBlock(text=MarkdownTextObject(text=_cut(summary, SECTION_MAX))),
    ]
    if notice.event is not Event.RESOLVED:
        fields = [
            MarkdownTextObject(text=_cut(f"*{label}*\n{value}", FIELD_MAX))
            for label, value in numbers(notice)[:FIELDS_MAX]
        ]
        blocks.append(SectionBlock(fields=fields))
    entity = " · ".join(f"{k}: *{v}*" for k, v in notice.entity.items())
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(text=_cut(entity or notice.rule, FIELD_MAX)),
                MarkdownTextObject(text=f"window from {_when(notice.observed_at)} · evaluated {_when(notice.evaluated_at)}"),
                MarkdownTextObject(text=_cut(f"incident `{notice.incident_key}`", FIELD_MAX)),
            ]
        )
    )
    fence = "```"
    room = SECTION_MAX - len("*Investigate*\n") - 2 * len(fence) - 2
    blocks.append(SectionBlock(text=MarkdownTextObject(text=f"*Investigate*\n{fence}\n{_cut(notice.query, room)}\n{fence}")))
    text = f"{headline(notice)}: {format_value(notice.value, notice.unit)} (baseline {format_value(notice.baseline, notice.unit)})"
    return {"text": text, "blocks": [block.to_dict() for block in blocks]}  # to_dict() runs the validators


# --- delivery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    ok: bool
    http_status: int = 0  # 0: no response
    error: str = ""
    retries: int = 0
    retry_after: float | None = None  # Slack asked us to wait this long (a 429 we did not wait out)


class _HalfJitter(Jitter):
    """Sleep between half and all of the backoff: spreads retries without adding whole seconds."""

    def recalculate(self, duration: float) -> float:
        return duration * (0.5 + random.random() / 2)


class _RetryAfter(RateLimitErrorRetryHandler):
    """Honour a 429's Retry-After within this attempt only when it is short enough."""

    def __init__(self, max_retry_count: int, max_wait: float):
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    @staticmethod
    def wait(response: HttpResponse | None) -> float:
        for name, values in (response.headers if response else {}).items():
            if name.lower() == "retry-after":
                try:
                    return float(values[0])
                except (TypeError, ValueError, IndexError):
                    break
        return 1.0

    def _can_retry(self, *, state: RetryState, request: HttpRequest, response: HttpResponse | None = None,
                   error: Exception | None = None) -> bool:
        return response is not None and response.status_code == 429 and self.wait(response) <= self.max_wait

    def prepare_for_next_attempt(self, *, state: RetryState, request: HttpRequest,
                                 response: HttpResponse | None = None, error: Exception | None = None) -> None:
        state.next_attempt_requested = True
        time.sleep(self.wait(response))
        state.increment_current_attempt()


class _Counting(RetryHandler):
    """Wraps the handlers to count the retries of one send (stored with the attempt)."""

    def __init__(self, inner: RetryHandler, counter: list[int]):
        super().__init__(inner.max_retry_count, inner.interval_calculator)
        self.inner, self.counter = inner, counter

    def can_retry(self, **kwargs) -> bool:
        return self.inner.can_retry(**kwargs)

    def prepare_for_next_attempt(self, **kwargs) -> None:
        self.counter[0] += 1
        self.inner.prepare_for_next_attempt(**kwargs)


class SlackSender:
    """Posts payloads to Incoming Webhooks with slack_sdk's retry handlers."""

    def __init__(self, delivery: DeliverySpec):
        self.delivery = delivery

    def _handlers(self, counter: list[int]) -> list[RetryHandler]:
        backoff = BackoffRetryIntervalCalculator(backoff_factor=self.delivery.backoff_seconds, jitter=_HalfJitter())
        retries = self.delivery.max_retries
        handlers = [
            ConnectionErrorRetryHandler(max_retry_count=retries, interval_calculator=backoff),
            ServerErrorRetryHandler(max_retry_count=retries, interval_calculator=backoff),
            _RetryAfter(max_retry_count=retries, max_wait=self.delivery.max_retry_after_seconds),
        ]
        return [_Counting(handler, counter) for handler in handlers]

    def send(self, url: SecretStr, payload: dict) -> SendResult:
        secret = url.get_secret_value()
        counter = [0]
        client = WebhookClient(
            secret, timeout=self.delivery.timeout_seconds, retry_handlers=self._handlers(counter), logger=_SDK_LOGGER
        )
        try:
            response = client.send_dict(payload)
        except Exception as error:  # connection refused, timeout, TLS: the attempt failed, a later cycle retries
            reason = getattr(error, "reason", None) or error
            return SendResult(False, 0, f"{type(error).__name__}: {reason}".replace(secret, "<webhook>"), counter[0])
        if response.status_code == 200 and (response.body or "").strip() == "ok":
            return SendResult(True, 200, "", counter[0])
        retry_after = _RetryAfter.wait(
            HttpResponse(status_code=429, headers={k: [v] for k, v in (response.headers or {}).items()})
        ) if response.status_code == 429 else None
        body = (response.body or "").strip().replace(secret, "<webhook>")
        return SendResult(False, response.status_code, f"HTTP {response.status_code}: {body[:300]}", counter[0], retry_after)
