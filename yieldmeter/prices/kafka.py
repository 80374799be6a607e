"""The prices topic: publish a catalog to it, read it back (latest record per key)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from yieldmeter.contracts import DISCOUNT_PREFIX, ContractError, OrgDiscount, parse_price
from yieldmeter.errors import YieldmeterError
from yieldmeter.prices.catalog import Catalog



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

