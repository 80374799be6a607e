"""The price catalog: genai-prices seed + user overrides + per-organisation discounts.

Everything the price job joins against travels on the compacted prices topic
(``Settings.topic_prices``) as JSON, one message per record:

==================  ===========================================================  =================
record              Kafka key                                                     header ``kind``
==================  ===========================================================  =================
:class:`PriceRecord` ``<provider>/<model>/<service_tier>@<effective_from>``        ``price``
                     (= ``PriceRecord.price_id``)
:class:`OrgDiscount` ``discount/<org_id>/<provider or *>@<effective_from>``        ``org_discount``
                     (= ``OrgDiscount.discount_id``)
==================  ===========================================================  =================

Why the key carries ``effective_from``: compaction keeps only the latest message per key,
and the temporal join needs the whole price HISTORY (a price change must not rewrite past
calls). Keyed by ``price_id`` every (price, effective_from) survives compaction, and
loading the same catalog twice still collapses to one message per key. Deleting a price is
a tombstone (null value) on its ``price_id``. A discount's key starts with ``discount/``,
which no price key can (a provider id never is ``discount``; :func:`build_catalog` refuses
it), so a consumer tells the two apart by the key prefix, the header, or the discount's
``"kind": "org_discount"`` field.

Seed (:func:`seed_prices`): for every model of the providers in :data:`PROVIDERS`,
genai-prices' own resolution (``ModelInfo.get_prices``) is evaluated at every date its
prices change (conditional prices with start dates, dated variants), once per service
tier it knows (:data:`SERVICE_TIERS`), and each distinct result becomes one PriceRecord
with that ``effective_from`` (1970-01-01 for the price that has always applied). What a
PriceRecord cannot express is left out and counted in :class:`SeedReport`: non-token
prices (per request, per web search, audio seconds ...), modality-specific token rates,
1-hour cache writes, a second context tier, and time-of-day prices (the price in force for
most of the day is taken).

Overrides (:func:`read_price_file`): YAML (``prices:`` and ``discounts:`` lists) or CSV
(one price per row; a CSV whose header has ``discount_pct`` holds discounts), with
PriceRecord's own field names. A user record with the same key and ``effective_from`` as
a seed record replaces it; a later ``effective_from`` adds a price change.
"""

from __future__ import annotations

import csv
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_serializer

from yieldmeter.contracts import (
    EARLIEST_PRICE,
    SCHEMA_VERSION,
    ContractError,
    Identifier,
    Name,
    PriceRecord,
    PriceTime,
    _plain_decimal,
    _wire_time,
    explain,
    parse_price,
    to_json_bytes,
)
from yieldmeter.errors import YieldmeterError
from yieldmeter.normalize import normalize_model

# genai-prices provider id -> the provider names producers send (UsageEvent.provider, i.e. the
# OTel gen_ai.provider.name well-known values). The seed writes each model once per name, so
# the price job joins on UsageEvent.provider as sent, without a provider mapping of its own:
# genai-prices has one "google" for the Gemini API and Vertex AI, and one "azure" for Azure
# OpenAI and Azure AI Inference. Every name maps back to its genai-prices id through
# normalize.PROVIDER_CATALOGUE (checked by a test), so normalize_model finds the same models.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "openai": ("openai",),
    "anthropic": ("anthropic",),
    "google": ("gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai"),
    "aws": ("aws.bedrock",),
    "azure": ("azure.ai.openai", "azure.ai.inference"),
    "mistral": ("mistral_ai",),
    "deepseek": ("deepseek",),
    "x-ai": ("x_ai",),
    "cohere": ("cohere",),
    "groq": ("groq",),
    "perplexity": ("perplexity",),
}

# genai-prices price variant (the request context it is selected by) -> UsageEvent.service_tier.
# "default" is the standard price; its context is sent too, because genai-prices lets a
# {'service_tier': 'default'} variant override it.
SERVICE_TIERS: dict[tuple[str, str], str] = {
    ("service_tier", "default"): "default",
    ("service_tier", "flex"): "flex",
    ("service_tier", "priority"): "priority",
    ("service_tier", "fast"): "fast",
    ("speed", "fast"): "fast",  # Anthropic's fast mode
    ("processing", "batch"): "batch",
}

# genai-prices price keys -> PriceRecord rate names. Everything else is counted as ignored.
_RATE_KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "output_reasoning_mtok": "reasoning",
}
DISCOUNT_PREFIX = "discount/"
_MIDNIGHT = time(0, tzinfo=UTC)


# --- discounts -------------------------------------------------------------------------------

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
    provider: Identifier | None = Field(
        None, description="Provider, as in UsageEvent.provider; null = every provider of the org."
    )
    discount_pct: Percent = Field(description="Discount in percent of the list price, 0..100, as a string.")
    effective_from: PriceTime = Field(description="First instant this discount applies; 1970-01-01T00:00:00.000Z = always.")
    source: Literal["user"] = Field("user", description="Discounts always come from the user's files.")

    @field_serializer("effective_from", when_used="json")
    def _ser_time(self, value: datetime) -> str:
        return _wire_time(value)

    @property
    def key(self) -> str:
        return f"{DISCOUNT_PREFIX}{self.org_id}/{self.provider or '*'}"

    @property
    def discount_id(self) -> str:
        """Kafka key on the prices topic: one message per discount and effective_from."""
        return f"{self.key}@{_wire_time(self.effective_from)}"

    def apply(self, cost_usd: Decimal) -> Decimal:
        return cost_usd * (100 - self.discount_pct) / 100


# --- the seed --------------------------------------------------------------------------------


@dataclass
class SeedReport:
    """What the seed took from genai-prices and what it left out.

    Counts are of catalog entries, one per (provider name, model): a Gemini model counts
    once for each of gcp.gemini, gcp.vertex_ai and gcp.gen_ai.
    """

    records: int = 0
    models: set[tuple[str, str]] = field(default_factory=set)  # (provider, model)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> models not seeded
    ignored: Counter[str] = field(default_factory=Counter)  # genai-prices price key -> models priced without it
    notes: Counter[str] = field(default_factory=Counter)  # approximation -> models

    def lines(self) -> list[str]:
        names = sum(len(n) for n in PROVIDERS.values())
        out = [f"{self.records} price records for {len(self.models)} (provider, model) entries on {names} provider names"]
        out += [f"skipped {n} entries: {why}" for why, n in sorted(self.skipped.items())]
        if self.ignored:
            out.append("price components left out (entries priced without them): " + ", ".join(f"{k} ({n})" for k, n in sorted(self.ignored.items())))
        out += [f"approximated in {n} entries: {why}" for why, n in sorted(self.notes.items())]
        return out


def _start(day: Any) -> datetime:
    return datetime.combine(day, _MIDNIGHT)


def _constraints(model: Any) -> list[Any]:
    prices = model.prices if isinstance(model.prices, list) else []
    return [c.constraint for c in prices] + [v.constraint for v in model.price_variants or ()]


def _change_dates(model: Any) -> list[datetime]:
    """Every instant at which genai-prices' answer for this model may change."""
    from genai_prices.types import StartDateConstraint

    starts = {_start(c.start_date) for c in _constraints(model) if isinstance(c, StartDateConstraint)}
    return sorted(starts | {EARLIEST_PRICE})


def _has_time_of_day(model: Any) -> bool:
    from genai_prices.types import TimeOfDateConstraint

    return any(isinstance(c, TimeOfDateConstraint) for c in _constraints(model))


def _price_on(model: Any, day: datetime, context: dict[str, str] | None, time_of_day: bool) -> Any:
    """genai-prices' price for a call on ``day``; with time-of-day prices, the one in force longest."""
    if not time_of_day:
        return model.get_prices(day, context)
    # Quarter hours cover the half-hour boundaries genai-prices uses (DeepSeek off-peak).
    seen: dict[str, Any] = {}
    votes: Counter[str] = Counter()
    for quarter in range(96):
        price = model.get_prices(day + timedelta(minutes=15 * quarter), context)
        seen.setdefault(repr(price), price)
        votes[repr(price)] += 1
    return seen[votes.most_common(1)[0][0]]


def _variant_active(model: Any, when: dict[str, str], at: datetime) -> bool:
    return any(
        v.when == when and (v.constraint is None or v.constraint.active(at)) for v in model.price_variants or ()
    )


def _rate_fields(price: Any) -> dict[str, Any] | str:
    """PriceRecord rate fields of one genai-prices ModelPrice, or the reason it cannot be one."""
    from genai_prices.types import TieredPrices

    values = {k: v for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
    if "input_mtok" not in values and "output_mtok" not in values:
        return "no per-token input/output price"
    if "requests_kcount" in values:
        # Unlike a web-search or audio price, a per-request fee applies to every call: a
        # token-only price would under-charge all of them, so the model is left unpriced.
        return "per-request fee (a token-only price would under-charge every call)"
    rates = {_RATE_KEYS[k]: v for k, v in values.items() if k in _RATE_KEYS}
    rates.setdefault("input", Decimal(0))  # genai-prices: an unpriced unit costs nothing
    rates.setdefault("output", Decimal(0))  # embeddings have no output price
    tiered = {name: v for name, v in rates.items() if isinstance(v, TieredPrices)}
    fields = {f"{name}_per_mtok": v.base if isinstance(v, TieredPrices) else v for name, v in rates.items()}
    if tiered:
        starts = {v.tiers[0].start for v in tiered.values()}
        if len(starts) > 1:
            return "tiers of one model start at different input sizes"
        # PriceRecord has one threshold: a second tier is dropped (SeedReport notes it).
        fields["tier_threshold_input_tokens"] = starts.pop()
        for name, v in tiered.items():
            fields[f"{name}_above_per_mtok"] = v.tiers[0].price
        # PriceRecord needs both; an untiered input/output rate simply stays the same above.
        fields.setdefault("input_above_per_mtok", fields["input_per_mtok"])
        fields.setdefault("output_above_per_mtok", fields["output_per_mtok"])
    return fields


def _all_prices(model: Any) -> list[Any]:
    prices = [c.prices for c in model.prices] if isinstance(model.prices, list) else [model.prices]
    return prices + [v.prices for v in model.price_variants or ()]


def _approximations(model: Any) -> tuple[set[str], list[str]]:
    """genai-prices price keys a PriceRecord leaves out, and the approximations made, for one model."""
    from genai_prices.types import TieredPrices

    ignored: set[str] = set()
    notes = []
    for price in _all_prices(model):
        ignored |= {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_") and k not in _RATE_KEYS}
        if any(isinstance(v, TieredPrices) and len(v.tiers) > 1 for v in price.__dict__.values()):
            notes.append("more than one context tier (only the first kept)")
    if "cache_write_1h_mtok" in ignored:
        notes.append("1-hour cache writes priced at the (5-minute) cache-write rate")
    if _has_time_of_day(model):
        notes.append("time-of-day prices (the price in force most of the day kept)")
    return ignored, sorted(set(notes))


def seed_prices() -> tuple[list[PriceRecord], SeedReport]:
    """PriceRecords for every model of :data:`PROVIDERS` in the installed genai-prices data.

    SeedReport counts are per catalog entry, i.e. per (provider name, model).
    """
    from genai_prices.data_snapshot import get_snapshot

    by_id = {p.id: p for p in get_snapshot().providers}
    report = SeedReport()
    records: dict[str, PriceRecord] = {}
    for gp_id, names in PROVIDERS.items():
        provider = by_id.get(gp_id)
        if provider is None:
            report.skipped[f"provider {gp_id} not in this genai-prices version"] += 1
            continue
        # Models another provider resells (Claude on Vertex, GPT on Azure) are priced by
        # genai-prices from the reseller's fallback providers, at the standard price only
        # (it applies no service-tier variant to them).
        models = [(m, True) for m in provider.models]
        own = {m.id for m in provider.models}
        for fallback in provider.fallback_model_providers or ():
            if fallback in by_id:
                models += [(m, False) for m in by_id[fallback].models if m.id not in own]
        for model, is_own in models:
            tiers: dict[str, dict[str, str] | None] = {"default": {"service_tier": "default"} if is_own else None}
            for variant in (model.price_variants or ()) if is_own else ():
                for item in variant.when.items():
                    if item in SERVICE_TIERS and SERVICE_TIERS[item] != "default":
                        tiers[SERVICE_TIERS[item]] = dict(variant.when)
            for name in names:
                if normalize_model(name, model.id) != model.id.lower():
                    # Another model of this provider claims the id first: no event ever
                    # normalises to it, so a record would be dead weight.
                    report.skipped[f"id resolves to another model on {name}"] += 1
                    continue
                new = _seed_model(model, name, tiers)
                if isinstance(new, str):
                    report.skipped[new] += 1
                    continue
                records.update((r.price_id, r) for r in new)
                report.models.add((name, model.id.lower()))
                ignored, notes = _approximations(model)
                report.ignored.update(ignored)
                report.notes.update(notes)
    report.records = len(records)
    return sorted(records.values(), key=lambda r: r.price_id), report


def _seed_model(model: Any, provider: str, tiers: dict[str, dict[str, str] | None]) -> list[PriceRecord] | str:
    """The records of one model on one provider name, or why it has none."""
    time_of_day = _has_time_of_day(model)
    out: list[PriceRecord] = []
    reason = "no price"
    for tier, context in tiers.items():
        previous: dict[str, Any] | None = None
        for at in _change_dates(model):
            if tier != "default" and not _variant_active(model, context or {}, at):
                continue  # no price for this tier yet in genai-prices: the job falls back or marks unpriced
            fields = _rate_fields(_price_on(model, at, context, time_of_day))
            if isinstance(fields, str):
                reason = fields
                continue
            if fields == previous:
                continue  # genai-prices changed something a PriceRecord does not carry
            previous = fields
            try:
                out.append(PriceRecord(
                    provider=provider, model=model.id, service_tier=tier, effective_from=at,
                    source="genai-prices", **fields,
                ))
            except ValidationError as error:
                reason = f"rate outside PriceRecord's range ({error.errors()[0]['loc'][0]})"
    return out or reason


# --- user files ------------------------------------------------------------------------------


class PriceFileError(YieldmeterError):
    """A price or discount file is unreadable or breaks the contract; the message names where."""


class _Located(dict):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    """YAML with exact numbers (1.25 -> Decimal('1.25'), never a float) and times kept as text."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _Located:
    loader.flatten_mapping(node)
    out = _Located()
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _decimal(loader: _Loader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    try:
        return Decimal(text.replace("_", ""))
    except InvalidOperation:
        return text  # .inf / .nan: left for the model to reject with its own message


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)
# The contract takes ISO strings only (see contracts._IsoOnly); YAML would make a naive datetime.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))

_INT_FIELDS = ("schema_version", "tier_threshold_input_tokens")  # strict ints in the contract


@dataclass
class UserRecords:
    prices: list[PriceRecord] = field(default_factory=list)
    discounts: list[OrgDiscount] = field(default_factory=list)


def _problems(error: ValidationError, model: type[BaseModel], where: str, lines: dict[str, int] | None) -> list[str]:
    """One line per problem: where, the line of the field when known, then contracts.explain's text."""
    out = []
    for problem, text in zip(error.errors(include_url=False), explain(error).splitlines(), strict=True):
        line = (lines or {}).get(str(problem["loc"][0])) if problem["loc"] else None
        if problem["type"] == "extra_forbidden":
            text = f"{problem['loc'][0]}: unknown field; {model.__name__} has: {', '.join(model.model_fields)}"
        out.append(f"{where}: {f'line {line}, ' if line else ''}field {text}")
    return out


def _validate(kind: str, data: dict[str, Any], where: str, lines: dict[str, int] | None) -> PriceRecord | OrgDiscount:
    if kind == "prices":
        data = {"effective_from": "1970-01-01T00:00:00Z", "source": "user"} | dict(data)
        model: type[BaseModel] = PriceRecord
    else:
        data = {"effective_from": "1970-01-01T00:00:00Z"} | dict(data)
        model = OrgDiscount
    try:
        record = model.model_validate(data)
    except ValidationError as error:
        raise PriceFileError("\n".join(_problems(error, model, where, lines))) from None
    if isinstance(record, PriceRecord):
        if record.source != "user":
            line = f"line {lines['source']}, " if lines and "source" in lines else ""
            raise PriceFileError(f"{where}: {line}field source: a price from a file is source 'user' (got {record.source!r})")
        # The job joins on normalize_model's id; a user writing "gpt-4o-2024-08-06" where the
        # catalogue says "gpt-4o" must hit the same key as the events.
        normalised = normalize_model(record.provider, record.model)
        if normalised != record.model:
            record = record.model_copy(update={"model": normalised})
    return record


def _read_yaml(path: Path, text: str) -> UserRecords:
    try:
        document = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}: line {mark.line + 1}" if mark else str(path)
        raise PriceFileError(f"{where}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if document is None:
        return UserRecords()
    if not isinstance(document, dict):
        raise PriceFileError(f"{path}: expected a mapping with 'prices:' and/or 'discounts:' lists")
    unknown = sorted(set(document) - {"prices", "discounts"})
    if unknown:
        line = document.lines[unknown[0]] if isinstance(document, _Located) else "?"
        raise PriceFileError(f"{path}: line {line}: unknown section '{unknown[0]}' (expected prices, discounts)")
    out = UserRecords()
    for section in ("prices", "discounts"):
        items = document.get(section) or []
        if not isinstance(items, list):
            raise PriceFileError(f"{path}: line {document.lines[section]}: '{section}' must be a list of records")
        for i, item in enumerate(items):
            where = f"{path} {section}[{i}]"
            if not isinstance(item, dict):
                raise PriceFileError(f"{where}: each entry must be a mapping of field: value")
            record = _validate(section, item, where, getattr(item, "lines", None))
            (out.prices if section == "prices" else out.discounts).append(record)  # type: ignore[arg-type]
    return out


def _read_csv(path: Path, text: str) -> UserRecords:
    reader = csv.DictReader(text.splitlines(keepends=True))
    if not reader.fieldnames:
        return UserRecords()
    section = "discounts" if "discount_pct" in reader.fieldnames else "prices"
    out = UserRecords()
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise PriceFileError(f"{path}: line {start}: not valid CSV: {error}") from None
        if None in row:
            raise PriceFileError(f"{path}: line {start}: more cells than header columns")
        data: dict[str, Any] = {k.strip(): v.strip() for k, v in row.items() if v is not None and v.strip() != ""}
        for name in _INT_FIELDS:
            if name in data and data[name].isdigit():
                data[name] = int(data[name])
        if not data:
            continue  # a blank line
        record = _validate(section, data, f"{path} row {reader.line_num - 1} (line {start})", None)
        (out.prices if section == "prices" else out.discounts).append(record)  # type: ignore[arg-type]
    return out


def read_price_file(path: Path | str) -> UserRecords:
    """Prices and discounts of one user file (.yaml/.yml or .csv), validated, source 'user'."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PriceFileError(f"{path}: cannot read: {error}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        return _read_yaml(path, text)
    if path.suffix.lower() == ".csv":
        return _read_csv(path, text)
    raise PriceFileError(f"{path}: unknown file type; use .yaml, .yml or .csv")


# --- the catalog -----------------------------------------------------------------------------


@dataclass
class Catalog:
    """Prices by price_id and discounts by discount_id: exactly what the topic holds, one per key."""

    prices: dict[str, PriceRecord] = field(default_factory=dict)
    discounts: dict[str, OrgDiscount] = field(default_factory=dict)
    replaced: int = 0  # user prices that replaced a seed price with the same key and effective_from
    seed: SeedReport | None = None

    def add_price(self, record: PriceRecord) -> None:
        old = self.prices.get(record.price_id)
        if old is not None and old.source == "genai-prices" and record.source == "user":
            self.replaced += 1
        self.prices[record.price_id] = record

    def messages(self) -> Iterator[tuple[str, bytes, str]]:
        """(key, value, kind) in a stable order: loading the same catalog twice sends the same bytes."""
        for key in sorted(self.prices):
            yield key, to_json_bytes(self.prices[key]), "price"
        for key in sorted(self.discounts):
            yield key, to_json_bytes(self.discounts[key]), "org_discount"


def build_catalog(files: Iterable[Path | str] = (), *, seed: bool = True) -> Catalog:
    """The seed (unless ``seed=False``), then each file in order; later records win on equal keys."""
    catalog = Catalog()
    if seed:
        records, catalog.seed = seed_prices()
        for record in records:
            catalog.add_price(record)
    for path in files:
        user = read_price_file(path)
        for record in user.prices:
            if record.key.startswith(DISCOUNT_PREFIX):
                raise PriceFileError(f"{path}: provider 'discount' is reserved for discount keys on the prices topic")
            catalog.add_price(record)
        for discount in user.discounts:
            catalog.discounts[discount.discount_id] = discount
    return catalog


def in_force(records: Iterable[Any], at: datetime) -> list[Any]:
    """Per key, the record with the latest effective_from not after ``at``."""
    best: dict[str, Any] = {}
    for record in records:
        if record.effective_from <= at:
            current = best.get(record.key)
            if current is None or record.effective_from > current.effective_from:
                best[record.key] = record
    return [best[k] for k in sorted(best)]


def discount_for(discounts: Iterable[OrgDiscount], org_id: str, provider: str, at: datetime) -> OrgDiscount | None:
    """The discount applying to a call of ``org_id`` on ``provider`` at ``at`` (see OrgDiscount)."""
    current = {d.provider: d for d in in_force((d for d in discounts if d.org_id == org_id), at)}
    return current.get(provider) or current.get(None)


# --- Kafka -----------------------------------------------------------------------------------


def _unreachable(settings: Any, error: Exception) -> YieldmeterError:
    return YieldmeterError(
        f"cannot reach Kafka at {settings.bootstrap_servers} ({error}); start the local broker with "
        "`yieldmeter up` or point YIELDMETER_KAFKA_BOOTSTRAP at a running one"
    )


def ensure_prices_topic(settings: Any, topic: str) -> None:
    """Create the prices topic as infra/topics.yaml describes it (compacted) if it does not exist."""
    from yieldmeter.topics import admin_client, create_topics, topic_layout

    try:
        create_topics(admin_client(settings), {topic: topic_layout()["prices"]}, timeout_s=15)
    except Exception as error:  # KafkaException: broker down, auth ...
        raise _unreachable(settings, error) from None


def publish(catalog: Catalog, settings: Any, topic: str | None = None, timeout_s: float = 60) -> int:
    """Write every record of ``catalog`` to the prices topic; return the number sent.

    Idempotent producer with acks=all: a retried send never duplicates, and a message that
    fails to deliver makes the whole load fail (run it again: same keys, same result).
    """
    from confluent_kafka import KafkaException, Producer

    topic = topic or settings.topic_prices
    ensure_prices_topic(settings, topic)
    producer = Producer({
        "bootstrap.servers": settings.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "compression.type": "zstd",
        "log_level": 0,
    })
    failed: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failed.append(f"{message.key().decode()}: {error}")

    sent = 0
    try:
        for key, value, kind in catalog.messages():
            while True:
                try:
                    producer.produce(topic, value, key=key.encode(), headers=[("kind", kind.encode())], on_delivery=delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.5)
            sent += 1
            producer.poll(0)
        pending = producer.flush(timeout_s)
    except KafkaException as error:
        raise _unreachable(settings, error) from None
    if pending or failed:
        detail = failed[0] if failed else f"{pending} message(s) still queued after {timeout_s:.0f}s"
        raise YieldmeterError(f"loading prices into {topic} failed ({detail}); nothing is lost: run the load again")
    return sent


@dataclass
class TopicContents:
    catalog: Catalog
    messages: int = 0  # every message read, duplicates and tombstones included
    problems: list[str] = field(default_factory=list)


def read_topic(settings: Any, topic: str | None = None, timeout_s: float = 60) -> TopicContents:
    """The prices topic from the beginning to its end offsets (read_committed), latest per key."""
    import time as clock

    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

    topic = topic or settings.topic_prices
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers,
        # assign() without commits: the group is never joined, the id only satisfies the client.
        "group.id": f"yieldmeter-prices-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "log_level": 0,
    })
    out = TopicContents(Catalog())
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as error:
            raise _unreachable(settings, error) from None
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise YieldmeterError(f"topic {topic} does not exist yet; load prices with `yieldmeter prices load`")
        remaining = set(info.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        deadline = clock.monotonic() + timeout_s
        while remaining:
            if clock.monotonic() > deadline:
                raise YieldmeterError(f"reading {topic} took longer than {timeout_s:.0f}s; is the broker healthy?")
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        remaining.discard(message.partition())
                        continue
                    raise YieldmeterError(f"reading {topic}: {message.error()}")
                out.messages += 1
                _apply(out, message)
    finally:
        consumer.close()
    return out


def _apply(out: TopicContents, message: Any) -> None:
    key = (message.key() or b"").decode("utf-8", "replace")
    where = f"partition {message.partition()} offset {message.offset()} key {key!r}"
    if message.value() is None:  # tombstone: the price or discount was deleted
        out.catalog.prices.pop(key, None)
        out.catalog.discounts.pop(key, None)
        return
    try:
        if key.startswith(DISCOUNT_PREFIX):
            out.catalog.discounts[key] = OrgDiscount.model_validate_json(message.value())
        else:
            out.catalog.prices[key] = parse_price(message.value())
    except (ValidationError, ContractError) as error:
        out.problems.append(f"{where}: {str(error).splitlines()[0]}")


if __name__ == "__main__":
    from yieldmeter.contracts import SCHEMA_DIR, schema_text

    target = SCHEMA_DIR / "org_discount.schema.json"
    target.write_text(schema_text(OrgDiscount), encoding="utf-8")
    print(f"wrote {target}")
