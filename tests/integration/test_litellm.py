"""The LiteLLM integration with the real ``litellm`` package (its mock_response: no provider is
called), a real broker and, for the controls, the real pipeline (price, sessionize and controls
jobs on a Flink mini-cluster) and the real LiteLLM proxy.

- every call becomes a UsageEvent: success, failure, streamed, cached and reasoning tokens,
  the key/team/user metadata, LiteLLM's own cache hits;
- a team that crosses its budget is refused within seconds while another team goes on; with 50
  calls in flight at once, the overshoot is measured and every call over the budget was
  admitted before the block reached the gateway;
- the proxy answers a blocked team with HTTP 429;
- fail-open / fail-closed when the controls cannot be read.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of LiteLLM's price map in tests

import litellm  # noqa: E402
import pytest  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402

from tests.conftest import free_port  # noqa: E402
from yieldmeter.budgets import Budget, publish as publish_budgets, read_controls  # noqa: E402
from yieldmeter.controls import ControlsSettings  # noqa: E402
from yieldmeter.integrations.litellm import BudgetRefused, LiteLLMSettings, YieldmeterLogger  # noqa: E402
from yieldmeter.pipeline_jobs import start_pipeline  # noqa: E402
from yieldmeter.contracts import PriceRecord, to_json_bytes  # noqa: E402
from yieldmeter.topics import ensure_topics  # noqa: E402

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "How do I reset my password?"}]
# A response with cached and reasoning tokens, as OpenAI reports them (LiteLLM's usage shape).
RESPONSE = {
    "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Click reset."}}],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
              "prompt_tokens_details": {"cached_tokens": 300}, "completion_tokens_details": {"reasoning_tokens": 50}},
}


# The test's own prices (user overrides, as `yieldmeter prices` publishes them): fixed rates the
# test's arithmetic can rely on whatever genai-prices' next release says.
PRICES = [
    PriceRecord(provider="openai", model="gpt-4o", effective_from="1970-01-01T00:00:00Z", input_per_mtok="2.5",
                output_per_mtok="10", cache_read_per_mtok="1.25", source="user"),
    PriceRecord(provider="anthropic", model="claude-sonnet-4-5", effective_from="1970-01-01T00:00:00Z",
                input_per_mtok="3", output_per_mtok="15", cache_read_per_mtok="0.3", cache_write_per_mtok="3.75",
                source="user"),
]


def publish_prices(config) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": config.bootstrap_servers, "enable.idempotence": True})
    for price in PRICES:
        producer.produce(config.topic_prices, to_json_bytes(price), key=price.price_id.encode())
    assert producer.flush(30) == 0


# Claude through LiteLLM: cache reads and writes, both part of prompt_tokens (LiteLLM's usage).
ANTHROPIC_RESPONSE = {
    "model": "claude-sonnet-4-5-20250929",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Done."}}],
    "usage": {"prompt_tokens": 1500, "completion_tokens": 100, "total_tokens": 1600,
              "cache_creation_input_tokens": 300, "cache_read_input_tokens": 200},
}


def fresh(settings):
    run = uuid.uuid4().hex[:8]
    return settings.model_copy(update={f"topic_{key}": f"litellm.{run}.{key}" for key in settings.topics})


def events(settings, expected: int, timeout_s: float = 30) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"check-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topic_events])
    found, deadline = [], time.monotonic() + timeout_s
    while len(found) < expected and time.monotonic() < deadline:
        found += [json.loads(m.value()) for m in consumer.consume(100, 0.5) if m.error() is None]
    found += [json.loads(m.value()) for m in consumer.consume(100, 1.0) if m.error() is None]
    consumer.close()
    return found


def test_every_call_is_sent_as_a_usage_event(settings):
    config = fresh(settings)
    ensure_topics(config)
    ym = YieldmeterLogger(config, litellm_settings=LiteLLMSettings(org_id="acme", app="helpdesk", check=False))
    litellm.callbacks = [ym]
    try:
        async def calls():
            ok = await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response=RESPONSE, user="end-9",
                                           metadata={"team": "support", "session_id": "ticket-1", "feature": "reply"})
            stream = await litellm.acompletion(model="anthropic/claude-sonnet-4-5", messages=MESSAGES, stream=True,
                                               mock_response="Streamed answer in words", metadata={"team": "support"})
            chunks = [chunk async for chunk in stream]
            await litellm.acompletion(model="anthropic/claude-sonnet-4-5", messages=MESSAGES,
                                      mock_response=ANTHROPIC_RESPONSE, metadata={"team": "research"})
            with pytest.raises(litellm.RateLimitError):
                await litellm.acompletion(model="gpt-4o", messages=MESSAGES, metadata={"team": "sales"},
                                          mock_response=litellm.RateLimitError("slow down", "openai", "gpt-4o"))
            await asyncio.sleep(1)  # LiteLLM runs its async logging after returning
            return ok, chunks

        ok, chunks = asyncio.run(calls())
        litellm.completion(model="gpt-4o", messages=MESSAGES, mock_response="sync", metadata={"team": "ops"})
        # LiteLLM's own response cache: the second call never reaches a provider
        litellm.cache = litellm.Cache(type="local")
        for _ in range(2):
            litellm.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="cached", caching=True)
        time.sleep(1)
        ym.producer.flush(10)
    finally:
        forget_callbacks()
        litellm.cache = None
        ym.close()

    sent = {e["event_id"]: e for e in events(config, 7)}
    assert len(sent) == 7, sorted(sent)
    main = next(e for e in sent.values() if e["session_id"] == "ticket-1")
    assert {k: main[k] for k in ("org_id", "team", "user_id", "app", "session_id", "feature", "provider",
                                  "request_model", "response_model", "operation", "status")} == {
        "org_id": "acme", "team": "support", "user_id": "end-9", "app": "helpdesk", "session_id": "ticket-1",
        "feature": "reply", "provider": "openai", "request_model": "gpt-4o", "response_model": "gpt-4o-2024-08-06",
        "operation": "chat", "status": "ok"}
    assert (main["input_tokens"], main["cache_read_tokens"], main["output_tokens"], main["reasoning_tokens"]) == (
        1000, 300, 200, 50)
    claude = next(e for e in sent.values() if e["team"] == "research")
    assert (claude["provider"], claude["response_model"], claude["input_tokens"], claude["cache_read_tokens"],
            claude["cache_write_tokens"], claude["output_tokens"]) == (
        "anthropic", "claude-sonnet-4-5-20250929", 1500, 200, 300, 100)
    streamed = next(e for e in sent.values() if e["attributes"].get("litellm_stream") == "true")
    assert streamed["provider"] == "anthropic" and streamed["input_tokens"] > 0 and streamed["output_tokens"] > 0
    assert chunks and streamed["user_id"] == "anonymous" and streamed["team"] == "support"
    failed = next(e for e in sent.values() if e["status"] == "error")
    assert failed["error_type"] == "RateLimitError" and failed["team"] == "sales" and failed["input_tokens"] == 0
    assert any(e["team"] == "ops" and e["status"] == "ok" for e in sent.values())
    cached = [e for e in sent.values() if e["request_model"] == "gpt-4o-mini"]
    hits = [e for e in cached if e["attributes"].get("litellm_cache_hit") == "true"]
    assert len(cached) == 2 and len(hits) == 1 and hits[0]["input_tokens"] == hits[0]["output_tokens"] == 0


def test_fail_open_and_fail_closed_when_the_controls_cannot_be_read(settings):
    unreachable = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    quick = {"wait_s": 1, "stale_after_s": 1}
    open_ = YieldmeterLogger(unreachable, controls_settings=ControlsSettings(**quick))
    closed = YieldmeterLogger(unreachable, controls_settings=ControlsSettings(fail_closed=True, **quick))
    try:
        decision = open_.check(team="support")
        assert decision.allowed and decision.state == "unavailable" and "fail open" in decision.reason
        with pytest.raises(BudgetRefused) as refused:
            closed.check(team="support")
        assert refused.value.status_code == 429 and "refusing calls (fail closed)" in str(refused.value)
    finally:
        for ym in (open_, closed):
            ym.close()  # nothing was sent: check() only reads


# --- through the pipeline ----------------------------------------------------------------------


@dataclass
class Pipeline:
    config: object
    job: object


def forget_callbacks() -> None:
    """LiteLLM copies litellm.callbacks into its own lists on the first call; clear those too."""
    litellm.callbacks = []
    litellm.logging_callback_manager._reset_all_callbacks()


@pytest.fixture(scope="module")
def pipeline(kafka, tmp_path_factory):
    """The continuous pipeline (price, sessionize, controls) on fresh topics with the price catalog."""
    from tests.conftest import make_settings

    config = fresh(make_settings(tmp_path_factory.mktemp("litellm"), kafka_bootstrap=kafka.bootstrap_servers,
                                 flink_parallelism=2))
    ensure_topics(config)
    publish_prices(config)
    sentinel = Budget(org_id="sentinel", limit_usd=Decimal(1))
    publish_budgets([sentinel], config)
    job = start_pipeline(config, bounded=False, group_id=f"g-{config.topic_events}", checkpoint_interval="1s")
    try:
        deadline = time.monotonic() + 240
        while sentinel.budget_id not in read_controls(config):  # the controls job is up
            assert job.process.poll() is None, job.log_tail()
            assert time.monotonic() < deadline, "the controls job did not publish within 240s\n" + job.log_tail()
            time.sleep(1)
        yield Pipeline(config, job)
    finally:
        job.stop()


@dataclass
class CallLog:
    admitted: list[tuple[float, float, str]] = field(default_factory=list)  # (admitted, completed, event id)
    refused: list[float] = field(default_factory=list)
    decisions: dict[str, object] = field(default_factory=dict)  # event id -> the Decision that admitted it


async def worker(ym: YieldmeterLogger, team: str, log: CallLog, stop: threading.Event, delay_s: float) -> None:
    while not stop.is_set():
        # the time before the check: the controls' consumer thread may land the block (and record
        # its time) between a check that read the state before it and the next line
        admitted = time.monotonic()
        try:
            decision = ym.check(team=team)
        except BudgetRefused:
            log.refused.append(time.monotonic())
            await asyncio.sleep(0.1)
            continue
        response = await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response=RESPONSE,
                                             mock_delay=delay_s, metadata={"team": team})
        log.admitted.append((admitted, time.monotonic(), response._hidden_params["litellm_call_id"]))
        log.decisions[response._hidden_params["litellm_call_id"]] = decision


def priced_costs(config, event_ids: set[str], timeout_s: float = 60) -> dict[str, Decimal]:
    consumer = Consumer({"bootstrap.servers": config.bootstrap_servers, "group.id": f"check-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    consumer.subscribe([config.topic_priced])
    costs, deadline = {}, time.monotonic() + timeout_s
    while not event_ids <= set(costs) and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            record = json.loads(message.value())
            if record["event_id"] in event_ids:
                costs[record["event_id"]] = Decimal(record["cost_usd"])
    consumer.close()
    return costs


def test_a_team_over_budget_is_blocked_within_seconds_and_50_concurrent_calls_overshoot_only_by_those_in_flight(
        pipeline, capsys):
    limit = Decimal("0.50")
    budget = Budget(org_id="acme", team="a-team", limit_usd=limit, action="block")
    config = pipeline.config
    publish_budgets([budget, Budget(org_id="acme", team="b-team", limit_usd=Decimal(1000), action="block")], config)
    ym = YieldmeterLogger(config, litellm_settings=LiteLLMSettings(org_id="acme", app="agents"))
    litellm.callbacks = [ym]
    blocked_at: list[float] = []
    updates: list[tuple[float, str]] = []  # (when, the a-team control's state and spend) as the gateway saw them

    def on_update(key: str, control) -> None:
        if key == budget.budget_id:
            updates.append((time.monotonic(), f"{control.state} {control.spent_usd}" if control else "withdrawn"))
            if control and control.state == "block":
                blocked_at.append(updates[-1][0])

    ym.controls.on_update = on_update
    a, b, stop_a, stop_b = CallLog(), CallLog(), threading.Event(), threading.Event()

    async def run() -> None:
        tasks = [asyncio.create_task(worker(ym, "a-team", a, stop_a, 1.0)) for _ in range(50)]
        tasks += [asyncio.create_task(worker(ym, "b-team", b, stop_b, 1.0)) for _ in range(5)]
        deadline = time.monotonic() + 180
        while not blocked_at and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(5)  # keep knocking: every call of a-team must now be refused
        stop_a.set()
        # b-team goes on until a-team's last calls are counted (a quiet stream holds its newest
        # calls in the price job until later calls move its watermark)
        while time.monotonic() < deadline:
            control = ym.controls.controls_for("acme", "a-team")
            if control and control[0].calls >= len(a.admitted):
                break
            await asyncio.sleep(0.5)
        stop_b.set()
        await asyncio.gather(*tasks)

    try:
        asyncio.run(run())
        (final,) = ym.controls.controls_for("acme", "a-team")
    finally:
        forget_callbacks()
        ym.close()

    assert blocked_at, (f"a-team was never blocked; its control: {ym.controls.controls_for('acme', 'a-team')}\n"
                        + pipeline.job.log_tail())
    block = blocked_at[0]
    costs = priced_costs(config, {event_id for _, _, event_id in a.admitted})
    assert set(costs) == {event_id for _, _, event_id in a.admitted}  # every admitted call priced once
    assert final.calls == len(a.admitted) and final.spent_usd == sum(costs.values())  # counted once, exactly
    # when the spend crossed the limit: the completion of the call that took it there
    spent, crossed = Decimal(0), None
    for admitted, completed, event_id in sorted(a.admitted, key=lambda call: call[1]):
        spent += costs[event_id]
        if spent >= limit:
            crossed = completed
            break
    assert crossed is not None and crossed < block
    over = [call for call in a.admitted if call[1] > crossed]
    late = [(round(admitted - block, 3), a.decisions[event_id]) for admitted, _, event_id in a.admitted if admitted >= block]
    assert not late, (f"calls admitted after the block landed (s after it, the decision): {late}; "
                      f"the a-team control's updates (s after the block): {[(round(t - block, 3), u) for t, u in updates]}\n"
                      + pipeline.job.log_tail())
    assert len(a.refused) > 0 and b.refused == [] and len(b.admitted) > 0
    assert block - crossed < 30, "the block took more than 30 s to reach the gateway"
    overshoot = final.spent_usd - limit
    with capsys.disabled():
        print(f"\n[litellm {version('litellm')}] 50 concurrent calls of 1 s, "
              f"budget ${limit}: crossed, then blocked at the gateway {block - crossed:.1f} s later; "
              f"overshoot ${overshoot:.4f} ({overshoot / limit:.0%} of the budget) = {len(over)} calls, all admitted "
              f"before the block landed; {len(a.refused)} refusals after it; b-team: {len(b.admitted)} calls, 0 refused")


def test_the_proxy_refuses_a_blocked_team_with_429(pipeline, tmp_path):
    config = pipeline.config
    publish_budgets([Budget(org_id="acme", team="proxy-team", limit_usd=Decimal("0.0005"), action="block")], config)
    port, key = free_port(), f"sk-test-{uuid.uuid4().hex}"
    (tmp_path / "config.yaml").write_text(
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params: {model: openai/gpt-4o, api_key: sk-not-used, mock_response: 'Hello from the mock'}\n"
        "litellm_settings:\n"
        "  callbacks: yieldmeter.integrations.litellm.proxy_handler\n")
    env = {**os.environ, "LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "YIELDMETER_KAFKA_BOOTSTRAP": config.bootstrap_servers, "YIELDMETER_TOPIC_EVENTS": config.topic_events,
           "YIELDMETER_TOPIC_CONTROLS": config.topic_controls, "YIELDMETER_TOPIC_DLQ": config.topic_dlq,
           "YIELDMETER_LITELLM_ORG_ID": "acme", "YIELDMETER_LITELLM_APP": "gateway"}
    litellm_cli = Path(sys.executable).parent / "litellm"
    log = (tmp_path / "proxy.log").open("wb")
    proxy = subprocess.Popen([str(litellm_cli), "--config", str(tmp_path / "config.yaml"), "--port", str(port)],
                             env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    import httpx

    def call(team: str) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                          headers={"Authorization": f"Bearer {key}"},
                          json={"model": "gpt-4o", "messages": MESSAGES, "metadata": {"team": team}})

    try:
        deadline = time.monotonic() + 120
        while True:
            assert proxy.poll() is None, (tmp_path / "proxy.log").read_text()[-3000:]
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.5)
        statuses, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            response = call("proxy-team")
            statuses.append(response.status_code)
            if response.status_code == 429:
                break
            assert response.status_code == 200, response.text
            time.sleep(0.3)
        assert statuses[-1] == 429, f"never refused after {len(statuses)} calls"
        body = response.json()["error"]
        assert body["message"].startswith("yieldmeter: team proxy-team of acme spent $")
        assert "calls are refused until" in body["message"]
        assert int(response.headers["retry-after"]) > 0
        assert call("other-team").status_code == 200  # another team is not affected
        assert call("proxy-team").status_code == 429
    finally:
        proxy.terminate()
        proxy.wait(30)
        log.close()
