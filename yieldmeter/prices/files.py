"""User price files: YAML (``prices:`` and ``discounts:`` lists) or CSV, validated like the topic.

A CSV holds one price per row, or, when its header has ``discount_pct``, one discount per row;
fields are PriceRecord's and OrgDiscount's own names. Every error names the file, the record
and (YAML) the line of the field.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from yieldmeter.contracts import OrgDiscount, PriceRecord, explain
from yieldmeter.errors import YieldmeterError
from yieldmeter.normalize import normalize_model, normalize_provider



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
        # Calls are priced by canonical provider and catalogue model id: a user writing "bedrock"
        # or "gpt-4o-2024-08-06" where the catalogue says "aws.bedrock" / "gpt-4o" must hit the
        # same key as the events.
        provider = normalize_provider(record.provider)
        normalised = {"provider": provider, "model": normalize_model(provider, record.model)}
        if normalised != {"provider": record.provider, "model": record.model}:
            record = record.model_copy(update=normalised)
    elif record.provider is not None and normalize_provider(record.provider) != record.provider:
        record = record.model_copy(update={"provider": normalize_provider(record.provider)})
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

