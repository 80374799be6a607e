"""The prices topic: publish a catalog to it, read it back (latest record per key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from yieldmeter.contracts import DISCOUNT_PREFIX, ContractError, OrgDiscount, parse_price
from yieldmeter.errors import YieldmeterError
from yieldmeter.prices.catalog import Catalog
from yieldmeter.topics import ensure_topic, produce_all, read_to_end


def ensure_prices_topic(settings: Any, topic: str) -> None:
    """Create the prices topic as infra/topics.yaml describes it (compacted) if it does not exist."""
    ensure_topic(settings, "prices", topic)


def publish(catalog: Catalog, settings: Any, topic: str | None = None, timeout_s: float = 60) -> int:
    """Write every record of ``catalog`` to the prices topic; return the number sent.

    Idempotent producer with acks=all: a retried send never duplicates, and a message that
    fails to deliver makes the whole load fail (run it again: same keys, same result).
    """
    topic = topic or settings.topic_prices
    ensure_prices_topic(settings, topic)
    messages = ((topic, key, value, [("kind", kind.encode())]) for key, value, kind in catalog.messages())
    sent, problem = produce_all(settings, messages, timeout_s, **{"linger.ms": 20, "compression.type": "zstd"})
    if problem:
        raise YieldmeterError(f"loading prices into {topic} failed ({problem}); nothing is lost: run the load again")
    return sent


@dataclass
class TopicContents:
    catalog: Catalog
    messages: int = 0  # every message read, duplicates and tombstones included
    problems: list[str] = field(default_factory=list)


def read_topic(settings: Any, topic: str | None = None, timeout_s: float = 60) -> TopicContents:
    """The prices topic from the beginning to its end offsets (read_committed), latest per key."""
    topic = topic or settings.topic_prices
    messages = read_to_end(settings, topic, timeout_s)
    if messages is None:
        raise YieldmeterError(f"topic {topic} does not exist yet; load prices with `yieldmeter prices load`")
    out = TopicContents(Catalog())
    for message in messages:
        out.messages += 1
        _apply(out, message)
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

