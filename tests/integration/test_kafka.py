"""Round trips on the real broker."""

import json

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import ConfigResource

from tests.kafka_helpers import consume_all
from yieldmeter.topics import admin_client, ensure_topics, topic_layout

pytestmark = pytest.mark.integration


def test_produce_consume_round_trip(kafka, new_topics):
    (topic,) = new_topics(partitions=3)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "enable.idempotence": True})
    sent = {f"key-{i}": json.dumps({"i": i, "text": "ü" * (i % 7)}).encode() for i in range(2000)}
    for key, value in sent.items():
        producer.produce(topic, value, key=key)
    assert producer.flush(30) == 0
    received = consume_all(kafka.bootstrap_servers, topic, len(sent))
    assert {m.key().decode(): m.value() for m in received} == sent
    assert len(received) == len(sent)
    assert {m.partition() for m in received} == {0, 1, 2}


def test_pipeline_topics_follow_the_layout(settings):
    ensure_topics(settings)
    assert ensure_topics(settings) == []  # idempotent
    admin = admin_client(settings)
    metadata = admin.list_topics(timeout=10).topics
    layout = topic_layout()
    for key, name in settings.topics.items():
        assert len(metadata[name].partitions) == layout[key]["partitions"]
    prices = ConfigResource(ConfigResource.Type.TOPIC, settings.topics["prices"])
    config = admin.describe_configs([prices])[prices].result()
    assert config["cleanup.policy"].value == "compact"
