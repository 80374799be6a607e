"""Create the pipeline's topics from infra/topics.yaml (names from the settings); write and read
back the compacted topics yieldmeter keeps its own records in (prices, budgets, controls)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from functools import cache
from typing import Any

import yaml
from confluent_kafka import KafkaError as _KafkaErrorCode
from confluent_kafka.admin import AdminClient, NewTopic

from yieldmeter.config import Settings
from yieldmeter.errors import YieldmeterError
from yieldmeter.share import share_path

TOPICS_FILE = share_path("infra", "topics.yaml")


@cache
def topic_layout() -> dict[str, dict]:
    """Logical key -> {partitions, config} as written in infra/topics.yaml."""
    return yaml.safe_load(TOPICS_FILE.read_text())


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 0})


def create_topics(admin: AdminClient, specs: dict[str, dict], timeout_s: float = 30) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Existing ones are left as they are."""
    new = [
        NewTopic(name, num_partitions=spec["partitions"], replication_factor=1, config=spec.get("config", {}))
        for name, spec in specs.items()
    ]
    created = []
    for name, future in admin.create_topics(new, operation_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except Exception as error:  # KafkaException wrapping a KafkaError
            code = error.args[0].code() if error.args and hasattr(error.args[0], "code") else None
            if code != _KafkaErrorCode.TOPIC_ALREADY_EXISTS:
                raise
    _wait_until_listed(admin, list(specs), timeout_s)
    return created


def _wait_until_listed(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Creation is acknowledged by the controller before every broker's metadata has the topic;
    wait for it, so the caller can produce and list right away."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = admin.list_topics(timeout=5).topics
        if all(name in listed and listed[name].error is None for name in names):
            return
        time.sleep(0.1)


def ensure_topics(settings: Settings) -> list[str]:
    layout = topic_layout()
    specs = {settings.topics[key]: spec for key, spec in layout.items()}
    return create_topics(admin_client(settings), specs)


# --- the compacted topics yieldmeter writes and reads back (prices, budgets, controls) -------


def kafka_unreachable(settings: Settings, error: Exception) -> YieldmeterError:
    return YieldmeterError(
        f"cannot reach Kafka at {settings.bootstrap_servers} ({error}); start the local broker with "
        "`yieldmeter up` or point YIELDMETER_KAFKA_BOOTSTRAP at a running one"
    )


def ensure_topic(settings: Settings, key: str, name: str | None = None) -> str:
    """Create the topic of ``key`` as infra/topics.yaml describes it, named ``name`` (default:
    the settings' name for it), if it does not exist; return its name."""
    name = name or settings.topics[key]
    try:
        create_topics(admin_client(settings), {name: topic_layout()[key]}, timeout_s=15)
    except Exception as error:  # KafkaException: broker down, auth ...
        raise kafka_unreachable(settings, error) from None
    return name


def produce_all(settings: Settings, messages: Iterable[tuple[str, str, bytes | None, list | None]],
                timeout_s: float, **config: Any) -> tuple[int, str | None]:
    """Send (topic, key, value, headers) messages with an idempotent producer and acks=all (a
    retried send never duplicates) and wait for every delivery: the number sent, and the first
    failure (None when every message was delivered). ``config`` adds producer settings."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True,
                         "acks": "all", "log_level": 0, **config})
    failed: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failed.append(f"{message.key().decode()}: {error}")

    sent = 0
    try:
        for topic, key, value, headers in messages:
            while True:
                try:
                    producer.produce(topic, value, key=key.encode(), headers=headers, on_delivery=delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.5)
            sent += 1
            producer.poll(0)
        pending = producer.flush(timeout_s)
    except KafkaException as error:
        raise kafka_unreachable(settings, error) from None
    if pending or failed:
        return sent, failed[0] if failed else f"{pending} message(s) still queued after {timeout_s:.0f}s"
    return sent, None


def read_to_end(settings: Settings, topic: str, timeout_s: float) -> list[Any] | None:
    """Every message of ``topic`` from the beginning to its end offsets at the start
    (read_committed, in offset order per partition); None when the topic does not exist."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers,
        # assign() without commits: the group is never joined, the id only satisfies the client.
        "group.id": f"yieldmeter-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "isolation.level": "read_committed", "enable.partition.eof": True,
        "log_level": 0,
    })  # fmt: skip
    messages: list[Any] = []
    try:
        try:
            info = consumer.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as error:
            raise kafka_unreachable(settings, error) from None
        if info is None or info.error is not None or not info.partitions:
            return None
        remaining = set(info.partitions)
        for partition in list(remaining):  # an empty partition sends no EOF before its first record
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                remaining.discard(partition)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise YieldmeterError(f"reading {topic} took longer than {timeout_s:.0f}s; is the broker healthy?")
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    if message.error().code() == _KafkaErrorCode._PARTITION_EOF:
                        remaining.discard(message.partition())
                        continue
                    raise YieldmeterError(f"reading {topic}: {message.error()}")
                messages.append(message)
    finally:
        consumer.close()
    return messages
