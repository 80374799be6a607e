"""docs/controls.md's consumer example, run as written against a real broker and records of
the usage.controls contract."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Producer

from yieldmeter.budgets import Control
from tests.conftest import PROJECT_ROOT
from yieldmeter.topics import topic_layout

pytestmark = pytest.mark.integration

EXAMPLE = re.compile(r"<!-- example: controls consumer -->\s*```python\n(.*?)```", re.S)


def test_the_documented_consumer_follows_the_topic_and_refuses_a_blocked_scope(settings, new_topics):
    (topic,) = new_topics(config=topic_layout()["controls"]["config"])
    now = datetime.now(UTC)

    def control(budget_id, state, end, calls=3, **scope):
        return Control(budget_id=budget_id, org_id="acme", period="day", time_zone="UTC",
                       period_start=now - timedelta(hours=1), period_end=end, state=state, action="block",
                       limit_usd=Decimal(5), spent_usd=Decimal("5.5" if calls else 0), remaining_usd=Decimal("-0.5"),
                       warn_at_pct=Decimal(80), calls=calls, unpriced_calls=0, reason=f"{budget_id} {state}",
                       updated_at=now, **scope).model_dump_json().encode()

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    producer.produce(topic, control("spend/acme/team=support/day", "block", now + timedelta(hours=5), team="support"),
                     key="spend/acme/team=support/day")
    producer.produce(topic, control("spend/acme/team=sales/day", "block", now - timedelta(minutes=1), team="sales"),
                     key="spend/acme/team=sales/day")  # yesterday's: expired
    producer.produce(topic, control("spend/acme/day", "warn", now + timedelta(hours=5)), key="spend/acme/day")
    producer.flush(10)

    namespace: dict = {}
    exec(EXAMPLE.search((PROJECT_ROOT / "docs" / "controls.md").read_text()).group(1), namespace)
    stop = threading.Event()
    thread = threading.Thread(target=namespace["follow"], args=(settings.bootstrap_servers, stop, topic), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(namespace["controls"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        decide = namespace["decide"]
        call = {"org_id": "acme", "user_id": "u1", "app": "bot", "api_key": None}
        assert decide(call | {"team": "support"}) == (False, "spend/acme/team=support/day block")
        assert decide(call | {"team": "sales"}) == (True, "spend/acme/day warn")
        assert decide(call | {"org_id": "globex", "team": "support"}) == (True, "no budget applies")
        # the job's next state as it writes it: a tombstone, the budget with no spend (its LEFT
        # JOIN, for an instant), a tombstone, the new state; then a replay of an earlier one
        support, end = "spend/acme/team=support/day", now + timedelta(hours=5)
        for value in [None, control(support, "ok", end, calls=0, team="support"), None,
                      control(support, "block", end, calls=4, team="support"), None,
                      control(support, "block", end, calls=2, team="support")]:
            producer.produce(topic, value, key=support)
        producer.flush(10)
        until = time.monotonic() + 3
        while time.monotonic() < until:
            assert decide(call | {"team": "support"}) == (False, "spend/acme/team=support/day block")
            time.sleep(0.01)
        assert namespace["controls"][support]["calls"] == 4
        producer.produce(topic, None, key="spend/acme/team=support/day")  # the budget was deleted
        producer.flush(10)
        while "spend/acme/team=support/day" in namespace["controls"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert decide(call | {"team": "support"})[0]
    finally:
        stop.set()
        thread.join(10)
