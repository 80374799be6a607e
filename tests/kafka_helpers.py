"""Reading topics back in tests."""

from __future__ import annotations

import time

from confluent_kafka import Consumer


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> list:
    """Every committed record of ``topic`` (read_committed, from the beginning): at least
    ``expected`` of them, then a little longer, so that a duplicate beyond ``expected`` fails
    the caller's count too."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"check-{topic}-{time.monotonic_ns()}",
        "auto.offset.reset": "earliest", "isolation.level": "read_committed", "enable.auto.commit": False,
    })  # fmt: skip
    consumer.subscribe([topic])
    messages, deadline = [], time.monotonic() + timeout_s
    while len(messages) < expected and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            assert message.error() is None, message.error()
            messages.append(message)
    messages.extend(m for m in consumer.consume(1000, 1.0) if m.error() is None)
    consumer.close()
    return messages
