"""The smoke job end to end: real broker, real Flink mini-cluster, real Kafka connector."""

import json

import pytest
from confluent_kafka import Producer

from tests.kafka_helpers import consume_all
from yieldmeter.flink import start_job

pytestmark = pytest.mark.integration


def test_smoke_job_copies_every_record_once(settings, new_topics):
    source, sink = new_topics(2, partitions=2)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    records = [json.dumps({"n": i}).encode() if i % 10 else b"not json" for i in range(500)]
    for record in records:
        producer.produce(source, record)
    assert producer.flush(30) == 0

    start_job("smoke", settings, source_topic=source, sink_topic=sink, group_id=f"g-{source}").wait(300)

    out = [json.loads(m.value()) for m in consume_all(settings.bootstrap_servers, sink, len(records))]
    assert len(out) == len(records)
    assert sorted(o["payload"].encode() for o in out) == sorted(records)
    assert len({(o["source_partition"], o["source_offset"]) for o in out}) == len(records)
    assert all(o["is_json"] == (o["payload"] != "not json") for o in out)
    assert list((settings.state_path / "flink" / "checkpoints" / "smoke").iterdir())  # checkpointed state
