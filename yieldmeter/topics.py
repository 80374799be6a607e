"""Create the pipeline's topics from infra/topics.yaml (names from the settings)."""

from __future__ import annotations

from functools import cache

import yaml
from confluent_kafka import KafkaError as _KafkaErrorCode
from confluent_kafka.admin import AdminClient, NewTopic

from yieldmeter.config import Settings
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
