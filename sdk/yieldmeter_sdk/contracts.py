"""Event contracts: the JSON that producers send and the pipeline reads.

Three records travel through Kafka as plain JSON objects (UTF-8, one per message):

- :class:`UsageEvent`   one model call            topic usage.events
- :class:`OutcomeEvent` one business outcome      topic usage.outcomes
- :class:`PriceRecord`  one price of one model    topic usage.prices (compacted, key = ``PriceRecord.price_id``)
- :class:`OrgDiscount`  one negotiated discount   topic usage.prices (key = ``OrgDiscount.discount_id``)

Any producer in any language can send them; schemas/*.schema.json describe them and
schemas/README.md shows an example of each. Field names follow the OpenTelemetry GenAI
semantic conventions in snake_case; UsageEvent also accepts the OTel dotted attribute names
(``gen_ai.usage.input_tokens`` ...) as input and always writes the snake_case names.

Wire rules that every consumer relies on (Flink SQL and ClickHouse parse these shapes):
- timestamps are written as ISO-8601 UTC with milliseconds and a ``Z``: 2026-11-22T13:00:00.123Z
- money is a decimal written as a JSON string ("0.000125"), never a float
- unknown top-level fields are rejected; free-form data goes in ``attributes``

Regenerate the JSON Schemas after changing a model, from the checkout's root:
``python -m yieldmeter_sdk.contracts`` (writes schemas/).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Optional

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, TzInfo, core_schema

UTC = timezone.utc  # datetime.UTC is this same object, from Python 3.11 on

SCHEMA_VERSION = 1
MAX_COUNT = 10**9
"""Upper bound of every token/tool-call count: far above any real call, low enough to catch garbage."""
MAX_FUTURE = timedelta(minutes=5)
"""Clock skew tolerated between a producer and the validator."""
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
EARLIEST_PRICE = datetime(1970, 1, 1, tzinfo=UTC)
"""A price effective from the epoch means 'since always'."""

# --- field types -----------------------------------------------------------------------------

# strict: a JSON true/1.0/"5" is a producer bug, not a count.
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]
# At least one non-blank character; bounded so a runaway producer cannot bloat the warehouse.
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"\S")]
ModelId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"\S")]


class _LowerFirst:
    """Lower-case a str before its own constraints are checked, in pydantic-core (no Python call
    per field; StringConstraints(to_lower=True) alone would match the pattern before lowering)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.chain_schema([core_schema.str_schema(to_lower=True), handler(source)])


Identifier = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$"),
    _LowerFirst(),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}, mode="validation"),
]
"""Token such as a provider (openai, aws.bedrock) or a service tier; lower-cased on input."""
OutcomeType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Attributes = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=128)],
        Annotated[str, StringConstraints(max_length=1024)],
    ],
    Field(max_length=64),
]


_EXACT = Context(prec=64)  # far above the digits a checked amount has (21 at most): adding 0 never rounds
_ZERO = Decimal(0)


def _plain_decimal(value: Decimal) -> Decimal:
    # "1E+2" and "-0" are valid Decimals but not what a SQL DECIMAL column expects; one amount,
    # one spelling. Adding 0 fixes both in one C call: the sum's exponent is min(value's, 0) and
    # -0 + 0 is 0 (a fixed context, so a caller's decimal context cannot round it).
    return _EXACT.add(value, _ZERO)


_MONEY_JSON = {
    "anyOf": [
        {"type": "string", "pattern": r"^\d{1,12}(\.\d{1,9})?$"},
        {"type": "number", "minimum": 0},
    ],
    "description": "USD amount, at most 12 integer digits and 9 decimals. Send a string to keep it exact.",
}
Usd = Annotated[
    Decimal,
    Field(ge=0, max_digits=21, decimal_places=9, allow_inf_nan=False),
    AfterValidator(_plain_decimal),
    # str(Decimal("0.0000001")) is "1E-7": format positionally instead.
    PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json"),
    WithJsonSchema(_MONEY_JSON, mode="validation"),
]
"""Non-negative USD amount: 12 integer digits (a trillion dollars) and 9 decimals (nano-dollars)."""


class _IsoOnly:
    """A datetime from an ISO-8601 string (or, from Python, a datetime), never from a number:
    pydantic would read 1700000000, or "1700000000", as a Unix time, and on the wire that is
    ambiguous (s or ms?). A string must start with a date (the pipeline's decoder reads the same).
    Built from pydantic-core schemas so the check costs no Python call per event."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        iso = core_schema.str_schema(strict=True, pattern=r"^[0-9]{4}-")
        iso_or_datetime = core_schema.custom_error_schema(
            core_schema.json_or_python_schema(
                json_schema=iso,
                python_schema=core_schema.union_schema([core_schema.is_instance_schema(datetime), iso]),
            ),
            "datetime_format",
            custom_error_message="must be an ISO-8601 string with a UTC offset, e.g. 2026-11-22T13:00:00.123Z",
        )
        return core_schema.chain_schema([iso_or_datetime, handler(source)])


# value - _SUB_MILLIS[n] drops n microseconds: a tuple lookup, where datetime.replace() and
# timedelta() each cost several times more (this runs once per event in the producer hot path).
_SUB_MILLIS = tuple(timedelta(microseconds=n) for n in range(1000))


def _utc_millis(value: datetime, earliest: datetime, too_early: str) -> datetime:
    """The same instant in datetime.UTC, truncated to the millisecond, not before ``earliest``."""
    tz = value.tzinfo
    # A parsed time carries pydantic-core's TzInfo, always an offset: only other tzinfos need asking.
    if tz is None or (type(tz) is not TzInfo and tz is not UTC and value.utcoffset() is None):
        raise PydanticCustomError("timezone_aware", "must carry a UTC offset or 'Z'; naive times are ambiguous")
    try:
        value = value.astimezone(UTC)  # returns the value itself when it is already in datetime.UTC
    except OverflowError:  # outside years 1-9999 once in UTC
        if value.year < 2000:
            raise PydanticCustomError("time_too_early", too_early) from None
        raise PydanticCustomError("time_out_of_range", "must be before 9999-12-31T23:59:59.999Z") from None
    if micro := value.microsecond % 1000:
        value -= _SUB_MILLIS[micro]
    if value < earliest:
        raise PydanticCustomError("time_too_early", too_early)
    return value


_second_bound = (0, EARLIEST_EVENT)
"""(a whole second of the wall clock, that second + MAX_FUTURE): never later than the exact bound
for as long as the clock reads that second."""


def _event_time(value: datetime, info: ValidationInfo) -> datetime:
    global _second_bound
    value = _utc_millis(value, EARLIEST_EVENT, "must not be before 2000-01-01T00:00:00Z")
    context = info.context
    now = context.get("now") if isinstance(context, dict) else None  # the validator's clock: injectable in tests
    if not now:
        # datetime.now() costs more than the rest of this check: a time within the bound of the
        # current whole second passes without it; only one beyond that is checked exactly.
        second, bound = _second_bound
        if second != (current := int(time.time())):
            bound = datetime.fromtimestamp(current, UTC) + MAX_FUTURE
            _second_bound = (current, bound)
        if value <= bound:
            return value
        now = datetime.now(UTC)
    limit = now + MAX_FUTURE
    if value > limit:
        raise PydanticCustomError(
            "time_in_future",
            "must not be more than 5 minutes in the future (validator clock {now}); check the producer's clock",
            {"now": _wire_time(limit - MAX_FUTURE)},
        )
    return value


def _price_time(value: datetime) -> datetime:
    return _utc_millis(value, EARLIEST_PRICE, "must not be before 1970-01-01T00:00:00Z")


_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))
_MILLIS = tuple(f"{n:03d}" for n in range(1000))


def _wire_time(value: datetime) -> str:
    # Runs once per event in the producer hot path. Joining precomputed digits in an f-string
    # costs about a third of isoformat() + replace() (or %-formatting) and writes the same text for
    # every validated time (UTC, 4-digit year); any other value takes the general path.
    year = value.year
    if value.tzinfo is UTC and year >= 1000:
        two = _TWO_DIGITS
        return (
            f"{year}-{two[value.month]}-{two[value.day]}T{two[value.hour]}:{two[value.minute]}:{two[value.second]}"
            f".{_MILLIS[value.microsecond // 1000]}Z"
        )
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_TIME_JSON = WithJsonSchema(
    {"type": "string", "format": "date-time", "description": "ISO-8601 with offset; written as UTC with ms and Z"},
    mode="validation",
)
# A plain serializer with a declared return type: pydantic-core calls it with the value only and
# writes the str without inspecting it (cheaper than a field_serializer method).
_TIME_WIRE = PlainSerializer(_wire_time, return_type=str, when_used="json")
EventTime = Annotated[datetime, _IsoOnly(), AfterValidator(_event_time), _TIME_WIRE, _TIME_JSON]
PriceTime = Annotated[datetime, _IsoOnly(), AfterValidator(_price_time), _TIME_WIRE, _TIME_JSON]


class _Contract(BaseModel):
    # cache_strings="keys": values from JSON are mostly unique (ids, times), so pydantic-core's
    # string cache costs more than it saves on them; attribute keys repeat and stay cached.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False, cache_strings="keys")


# --- events ----------------------------------------------------------------------------------


class UsageEvent(_Contract):
    """One model call: who made it, which model, how many tokens of each kind, how it ended."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this contract.")
    event_id: Name = Field(description="Unique id of this call; a re-delivered event with the same id is a duplicate.")
    occurred_at: EventTime = Field(description="When the call started (OTel: span start time).")
    org_id: Name = Field(description="Customer organisation.")
    team: Name = Field(description="Team inside the organisation.")
    user_id: Name = Field(
        description="User or service account (OTel: user.id).", validation_alias=AliasChoices("user_id", "user.id")
    )
    app: Name = Field(description="Calling application (OTel: service.name).")
    feature: Optional[Name] = Field(None, description="Feature of the app that made the call.")
    provider: Identifier = Field(
        description="Provider, lower-case: openai, anthropic, aws.bedrock, gcp.vertex_ai, azure.ai.openai ... "
        "(OTel: gen_ai.provider.name).",
        validation_alias=AliasChoices("provider", "gen_ai.provider.name", "gen_ai.system"),
    )
    request_model: ModelId = Field(
        description="Model asked for (OTel: gen_ai.request.model).",
        validation_alias=AliasChoices("request_model", "gen_ai.request.model"),
    )
    response_model: Optional[ModelId] = Field(
        None,
        description="Model that answered (OTel: gen_ai.response.model); defaults to request_model.",
        validation_alias=AliasChoices("response_model", "gen_ai.response.model"),
    )
    operation: Identifier = Field(
        "chat",
        description="chat, text_completion, embeddings, generate_content ... (OTel: gen_ai.operation.name).",
        validation_alias=AliasChoices("operation", "gen_ai.operation.name"),
    )
    input_tokens: Count = Field(
        description="All input tokens, cached ones included (OTel: gen_ai.usage.input_tokens).",
        validation_alias=AliasChoices("input_tokens", "gen_ai.usage.input_tokens"),
    )
    cache_read_tokens: Count = Field(
        0,
        description="Input tokens served from the provider's cache; part of input_tokens "
        "(OTel: gen_ai.usage.cache_read.input_tokens).",
        validation_alias=AliasChoices("cache_read_tokens", "gen_ai.usage.cache_read.input_tokens"),
    )
    cache_write_tokens: Count = Field(
        0,
        description="Input tokens written to the provider's cache; part of input_tokens "
        "(OTel: gen_ai.usage.cache_creation.input_tokens).",
        validation_alias=AliasChoices("cache_write_tokens", "gen_ai.usage.cache_creation.input_tokens"),
    )
    output_tokens: Count = Field(
        description="All output tokens, reasoning included (OTel: gen_ai.usage.output_tokens).",
        validation_alias=AliasChoices("output_tokens", "gen_ai.usage.output_tokens"),
    )
    reasoning_tokens: Count = Field(
        0,
        description="Output tokens spent on reasoning; part of output_tokens "
        "(OTel: gen_ai.usage.reasoning.output_tokens).",
        validation_alias=AliasChoices("reasoning_tokens", "gen_ai.usage.reasoning.output_tokens"),
    )
    service_tier: Identifier = Field(
        "default",
        description="Provider service tier: default, flex, priority, batch ... (OTel: openai.response.service_tier).",
        validation_alias=AliasChoices("service_tier", "openai.response.service_tier"),
    )
    session_id: Optional[Name] = Field(
        None,
        description="Conversation/session the call belongs to (OTel: gen_ai.conversation.id).",
        validation_alias=AliasChoices("session_id", "gen_ai.conversation.id"),
    )
    trace_id: Optional[Name] = Field(None, description="Trace the call belongs to (OTel: the span's trace id).")
    latency_ms: Optional[Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]] = Field(
        None, description="Wall time of the call in milliseconds (OTel: span duration)."
    )
    status: Literal["ok", "error", "cancelled"] = Field(
        "ok", description="How the call ended (OTel: span status; cancelled = client gave up)."
    )
    error_type: Optional[Name] = Field(
        None, description="Error class when status is error (OTel: error.type).",
        validation_alias=AliasChoices("error_type", "error.type"),
    )
    retry_of: Optional[Name] = Field(None, description="event_id of the call this one retries.")
    tool_calls: Count = Field(0, description="Tool calls the model asked for in this response.")
    attributes: Attributes = Field(
        default_factory=dict, description="Free-form string tags (at most 64; keys <= 128, values <= 1024 chars)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> UsageEvent:
        cached = self.cache_read_tokens + self.cache_write_tokens
        if cached > self.input_tokens:
            raise PydanticCustomError(
                "cache_exceeds_input",
                "cache_read_tokens + cache_write_tokens ({cached}) must not exceed input_tokens ({input}): "
                "input_tokens counts every input token, cached ones included",
                {"cached": cached, "input": self.input_tokens},
            )
        if self.reasoning_tokens > self.output_tokens:
            raise PydanticCustomError(
                "reasoning_exceeds_output",
                "reasoning_tokens ({reasoning}) must not exceed output_tokens ({output}): "
                "output_tokens counts every output token, reasoning included",
                {"reasoning": self.reasoning_tokens, "output": self.output_tokens},
            )
        if self.response_model is None:
            object.__setattr__(self, "response_model", self.request_model)  # frozen model: set once here
        return self

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


WELL_KNOWN_OUTCOMES = ("ticket_resolved", "pr_merged", "lead_qualified", "task_completed")


class OutcomeEvent(_Contract):
    """One business outcome (a resolved ticket, a merged PR ...), linked to the calls that led to it."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this contract.")
    outcome_id: Name = Field(
        description="Unique id of this outcome; a re-delivered outcome with the same id is a duplicate."
    )
    occurred_at: EventTime = Field(description="When the outcome happened.")
    org_id: Name = Field(description="Customer organisation.")
    team: Name = Field(description="Team inside the organisation.")
    user_id: Name = Field(description="User the outcome is credited to.")
    app: Name = Field(description="Application that produced the outcome.")
    session_id: Optional[Name] = Field(None, description="Session whose calls led to the outcome (strongest link).")
    trace_id: Optional[Name] = Field(None, description="Trace whose calls led to the outcome.")
    outcome_type: OutcomeType = Field(
        description="snake_case kind of outcome, an open set; well known: " + ", ".join(WELL_KNOWN_OUTCOMES) + "."
    )
    success: bool = Field(strict=True, description="Whether the outcome was achieved (false: e.g. ticket reopened).")
    value_usd: Optional[Usd] = Field(None, description="Business value in USD, written as a string.")
    attributes: Attributes = Field(default_factory=dict, description="Free-form string tags.")


class Rates(NamedTuple):
    """USD per million tokens that apply to one call, after tier and fallback rules."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    reasoning: Decimal


def _daily_time(value: str) -> str:
    return value if len(value) == 8 else f"{value}:00"


DailyTime = Annotated[
    str,
    StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"),
    AfterValidator(_daily_time),
]
"""A UTC time of day, HH:MM or HH:MM:SS; always written HH:MM:SS."""

_RATE_NAMES = ("input", "output", "cache_read", "cache_write", "reasoning")


class PriceRecord(_Contract):
    """The price of one model on one provider and service tier, in force from ``effective_from``.

    Rates are USD per million tokens. ``input_per_mtok`` applies to uncached input tokens.
    Unset optional rates fall back: cache_read/cache_write -> input, reasoning -> output.
    With a context tier, a call whose input_tokens (cached included) exceed
    ``tier_threshold_input_tokens`` pays the *_above rates for every token of the call
    (genai-prices' tier rule); an unset *_above rate means that token type's rate does not
    change above the threshold, and an unset fallback rate follows its parent's above rate.
    :meth:`rates_for` and :meth:`cost_usd` are the reference implementation of these rules.
    """

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this contract.")
    provider: Identifier = Field(description="Provider, as in UsageEvent.provider.")
    model: ModelId = Field(description="Normalised model id (yieldmeter.normalize.normalize_model).")
    service_tier: Identifier = Field("default", description="Service tier, as in UsageEvent.service_tier.")
    effective_from: PriceTime = Field(
        description="First instant this price applies; 1970-01-01T00:00:00.000Z = always."
    )
    currency: Literal["USD"] = Field("USD", description="Only USD for now.")
    input_per_mtok: Usd = Field(description="USD per million uncached input tokens.")
    output_per_mtok: Usd = Field(description="USD per million output tokens.")
    cache_read_per_mtok: Optional[Usd] = Field(None, description="USD per million cache-read tokens; null = input rate.")
    cache_write_per_mtok: Optional[Usd] = Field(None, description="USD per million cache-write tokens; null = input rate.")
    reasoning_per_mtok: Optional[Usd] = Field(None, description="USD per million reasoning tokens; null = output rate.")
    tier_threshold_input_tokens: Optional[Annotated[int, Field(strict=True, gt=0, le=MAX_COUNT)]] = Field(
        None, description="Context tier: calls with more input tokens than this pay the *_above rates."
    )
    input_above_per_mtok: Optional[Usd] = Field(None, description="Input rate above the tier threshold.")
    output_above_per_mtok: Optional[Usd] = Field(None, description="Output rate above the tier threshold.")
    cache_read_above_per_mtok: Optional[Usd] = Field(None, description="Cache-read rate above the tier threshold.")
    cache_write_above_per_mtok: Optional[Usd] = Field(None, description="Cache-write rate above the tier threshold.")
    reasoning_above_per_mtok: Optional[Usd] = Field(None, description="Reasoning rate above the tier threshold.")
    time_of_day_start: Optional[DailyTime] = Field(
        None, description="Daily window (UTC, with time_of_day_end): the price applies only from this time of day "
        "(genai-prices' time-of-day prices, e.g. off-peak hours)."
    )
    time_of_day_end: Optional[DailyTime] = Field(
        None, description="End of the daily window, exclusive; before the start, the window wraps past midnight."
    )
    source: Literal["genai-prices", "user"] = Field(description="Where the price came from.")

    @field_validator("model", mode="before")
    @classmethod
    def _lower_model(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _tier_complete(self) -> PriceRecord:
        above = [f"{n}_above_per_mtok" for n in _RATE_NAMES if getattr(self, f"{n}_above_per_mtok") is not None]
        if self.tier_threshold_input_tokens is None and above:
            raise PydanticCustomError(
                "tier_incomplete", "{fields} given without tier_threshold_input_tokens", {"fields": ", ".join(above)}
            )
        if self.tier_threshold_input_tokens is not None and (
            self.input_above_per_mtok is None or self.output_above_per_mtok is None
        ):
            raise PydanticCustomError(
                "tier_incomplete",
                "tier_threshold_input_tokens needs input_above_per_mtok and output_above_per_mtok",
            )
        if (self.time_of_day_start is None) != (self.time_of_day_end is None) or (
            self.time_of_day_start is not None and self.time_of_day_start == self.time_of_day_end
        ):
            raise PydanticCustomError(
                "window_incomplete", "time_of_day_start and time_of_day_end go together and must differ"
            )
        return self

    @property
    def key(self) -> str:
        """One price history: provider/model/tier, and the daily window if any (price_id adds the time)."""
        window = f"/{self.time_of_day_start}-{self.time_of_day_end}" if self.time_of_day_start else ""
        return f"{self.provider}/{self.model}/{self.service_tier}{window}"

    def applies_at(self, at: datetime) -> bool:
        """In force at ``at`` as far as this record alone can tell: effective, and inside its window."""
        if at < self.effective_from:
            return False
        if self.time_of_day_start is None or self.time_of_day_end is None:
            return True
        now = at.astimezone(UTC).strftime("%H:%M:%S.%f")
        start, end = self.time_of_day_start, self.time_of_day_end
        return start <= now < end if start < end else (now >= start or now < end)

    @property
    def price_id(self) -> str:
        return f"{self.key}@{_wire_time(self.effective_from)}"

    def rates_for(self, input_tokens: int) -> Rates:
        base = Rates(
            self.input_per_mtok,
            self.output_per_mtok,
            _first(self.cache_read_per_mtok, self.input_per_mtok),
            _first(self.cache_write_per_mtok, self.input_per_mtok),
            _first(self.reasoning_per_mtok, self.output_per_mtok),
        )
        if self.tier_threshold_input_tokens is None or input_tokens <= self.tier_threshold_input_tokens:
            return base
        inp, out = self.input_above_per_mtok, self.output_above_per_mtok
        assert inp is not None and out is not None  # guaranteed by _tier_complete
        return Rates(
            inp,
            out,
            _first(self.cache_read_above_per_mtok, self.cache_read_per_mtok, inp),
            _first(self.cache_write_above_per_mtok, self.cache_write_per_mtok, inp),
            _first(self.reasoning_above_per_mtok, self.reasoning_per_mtok, out),
        )

    def cost_usd(self, usage: Any) -> Decimal:
        """Exact cost of a call; ``usage`` is a UsageEvent or TokenUsage (anything with the five counts)."""
        rates = self.rates_for(usage.input_tokens)
        uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
        with localcontext() as exact:
            exact.prec = 64  # 10-digit counts x 21-digit rates exceed the default 28 digits
            per_million = (
                uncached * rates.input
                + usage.cache_read_tokens * rates.cache_read
                + usage.cache_write_tokens * rates.cache_write
                + (usage.output_tokens - usage.reasoning_tokens) * rates.output
                + usage.reasoning_tokens * rates.reasoning
            )
            return per_million.scaleb(-6)


def _first(*values: Decimal | None) -> Decimal:
    return next(v for v in values if v is not None)


# --- org discounts ---------------------------------------------------------------------------

DISCOUNT_PREFIX = "discount/"
"""Key prefix of an OrgDiscount on the prices topic; no price key can start with it."""

Percent = Annotated[
    Decimal,
    Field(ge=0, le=100, max_digits=8, decimal_places=4, allow_inf_nan=False),
    AfterValidator(_plain_decimal),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d{1,3}(\.\d{1,4})?$"},
                {"type": "number", "minimum": 0, "maximum": 100},
            ],
            "description": "Percent 0..100 with at most 4 decimals. Send a string to keep it exact.",
        },
        mode="validation",
    ),
]


class OrgDiscount(BaseModel):
    """A negotiated discount of one organisation, on one provider or on all, from ``effective_from``.

    The discounted cost of a call is ``cost_usd * (100 - discount_pct) / 100``. For a call,
    the discount in force is the latest one (by effective_from, not after the call) of the
    call's org for the call's provider; only when the org has none for that provider, its
    latest all-provider (``provider: null``) discount. A discount of 0 ends an earlier one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this contract.")
    kind: Literal["org_discount"] = Field("org_discount", description="Tells discounts from prices on the prices topic.")
    org_id: Name = Field(description="Organisation, as in UsageEvent.org_id.")
    provider: Optional[Identifier] = Field(
        None, description="Provider, as in UsageEvent.provider; null = every provider of the org."
    )
    discount_pct: Percent = Field(description="Discount in percent of the list price, 0..100, as a string.")
    effective_from: PriceTime = Field(description="First instant this discount applies; 1970-01-01T00:00:00.000Z = always.")
    source: Literal["user"] = Field("user", description="Discounts always come from the user's files.")

    @property
    def key(self) -> str:
        return f"{DISCOUNT_PREFIX}{self.org_id}/{self.provider or '*'}"

    @property
    def discount_id(self) -> str:
        """Kafka key on the prices topic: one message per discount and effective_from."""
        return f"{self.key}@{_wire_time(self.effective_from)}"

    def apply(self, cost_usd: Decimal) -> Decimal:
        with localcontext(_EXACT):  # exact: the default 28 digits would round a large cost with 21 decimals
            return cost_usd * (100 - self.discount_pct) / 100


# --- wire helpers ----------------------------------------------------------------------------


class ContractError(ValueError):
    """A payload broke the contract. ``str()`` is a single line (for a dead-letter reason):
    the problems, each naming the field and the rule, separated by '; '."""

    def __init__(self, error: ValidationError, model: type[BaseModel]):
        self.model = model
        self.errors = error.errors(include_url=False, include_context=False)
        super().__init__(f"invalid {model.__name__}: " + explain(error).replace("\n", "; "))


_MESSAGES = {
    "extra_forbidden": "unknown field (free-form data goes in 'attributes')",
    "missing": "required field is missing",
}


def explain(error: ValidationError | ContractError) -> str:
    """One line per problem: ``field: rule (got value)``."""
    lines = []
    for problem in error.errors if isinstance(error, ContractError) else error.errors(include_url=False):
        loc = ".".join(str(part)[:64] for part in problem["loc"]) or "(event)"
        msg = _MESSAGES.get(problem["type"], problem["msg"]).removeprefix("Value error, ")
        value = problem.get("input")
        scalar = isinstance(value, (str, int, float, Decimal)) and problem["type"] != "missing"
        got = f" (got {value!r:.80})" if scalar else ""
        lines.append(f"{loc}: {msg}{got}")
    return "\n".join(lines)


def to_json_bytes(event: BaseModel) -> bytes:
    """The event as compact UTF-8 JSON, as it goes on the wire (pydantic-core, no Python json)."""
    return event.__pydantic_serializer__.to_json(event)


def _parse(model: type[BaseModel], data: bytes | str, now: datetime | None) -> Any:
    try:
        return model.model_validate_json(data, context={"now": now} if now is not None else None)
    except ValidationError as error:
        raise ContractError(error, model) from error


def parse_usage(data: bytes | str, *, now: datetime | None = None) -> UsageEvent:
    """Validate a UsageEvent from JSON; ``now`` replaces the wall clock for the future-time check."""
    return _parse(UsageEvent, data, now)


def parse_outcome(data: bytes | str, *, now: datetime | None = None) -> OutcomeEvent:
    return _parse(OutcomeEvent, data, now)


def parse_price(data: bytes | str) -> PriceRecord:
    return _parse(PriceRecord, data, None)


# --- JSON Schema -----------------------------------------------------------------------------

SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "usage_event.schema.json": UsageEvent,
    "outcome_event.schema.json": OutcomeEvent,
    "price_record.schema.json": PriceRecord,
    "org_discount.schema.json": OrgDiscount,
}


def schema_text(model: type[BaseModel]) -> str:
    """The committed JSON Schema of one contract: what a producer may send."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema(mode="validation")}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path, schema_files: Optional[dict[str, type[BaseModel]]] = None) -> list[Path]:
    """Write each model's JSON Schema (default: this module's contracts) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in (schema_files or SCHEMA_FILES).items():
        path = directory / name
        path.write_text(schema_text(model), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(f"wrote {path}")
