"""Who a LiteLLM call belongs to: the key's org and team over the request's metadata, the end user
over the key's owner, the key's alias (never the key) as api_key, defaults last; and the event
built from what LiteLLM's proxy logs for a virtual key with a team (which needs the proxy's
database, so the logged fields are written out here as LiteLLM 1.106 logs them)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tests.conftest import free_port, make_settings  # noqa: E402
from yieldmeter.contracts import UsageEvent  # noqa: E402
from yieldmeter.integrations.litellm import LiteLLMSettings, Scope, YieldmeterLogger  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture
def logger(tmp_path):
    # No broker is needed to build events; nothing is sent in these tests.
    settings = make_settings(tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    ym = YieldmeterLogger(settings, litellm_settings=LiteLLMSettings(org_id="acme", app="gateway", check=False))
    yield ym
    ym.close()


KEY = {"user_api_key_org_id": "acme-eu", "user_api_key_team_alias": "support", "user_api_key_team_id": "t-123",
       "user_api_key_alias": "support-bot-key", "user_api_key_hash": "88dc28d0f0", "user_api_key_user_id": "owner-7"}


def test_the_key_wins_over_the_request_and_defaults_fill_the_rest(logger):
    assert logger.scope({"team": "sales", "org_id": "other", "app": "bot"}, KEY) == Scope(
        org_id="acme-eu", team="support", user_id="owner-7", app="bot", api_key="support-bot-key")
    assert logger.scope({"team": "sales", "user_id": "u1"}, {}, user="end-9") == Scope(
        org_id="acme", team="sales", user_id="end-9", app="gateway")
    assert logger.scope({}, {"user_api_key_hash": "88dc28d0f0"}) == Scope(
        org_id="acme", team="default", user_id="anonymous", app="gateway", api_key="88dc28d0f0")


def test_a_proxy_call_with_a_team_key_becomes_a_usage_event(logger):
    slo = {
        "id": "chatcmpl-1", "call_type": "acompletion", "status": "success", "model": "gpt-4o",
        "model_group": "gpt-4o-prod", "custom_llm_provider": "openai", "startTime": 1796500000.25,
        "endTime": 1796500001.5, "cache_hit": False, "stream": False, "trace_id": "tr-1",
        "metadata": KEY | {"requester_metadata": {"session_id": "ticket-9", "feature": "reply"},
                           "user_api_key_end_user_id": "customer-42",
                           "usage_object": {"prompt_tokens": 900, "completion_tokens": 80,
                                            "prompt_tokens_details": {"cached_tokens": 500}}},
    }
    fields = logger.event_fields({"standard_logging_object": slo, "litellm_call_id": "call-1"}, None, ok=True)
    event = UsageEvent.model_validate(fields)
    assert (event.event_id, event.org_id, event.team, event.user_id, event.app, event.session_id, event.feature) == (
        "call-1", "acme-eu", "support", "customer-42", "gateway", "ticket-9", "reply")
    assert (event.input_tokens, event.cache_read_tokens, event.output_tokens, event.latency_ms) == (900, 500, 80, 1250)
    assert event.attributes == {"api_key": "support-bot-key", "litellm_call_type": "acompletion",
                                "litellm_model_group": "gpt-4o-prod"}
    assert "88dc28d0f0" not in event.model_dump_json()  # the alias is used; no key material besides
