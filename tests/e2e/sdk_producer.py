"""Run by tests/e2e/test_installed.py inside a fresh virtual environment that holds only the
yieldmeter-sdk wheel and its dependencies (any Python from 3.9): produce a few calls and an
outcome with the SDK to the broker given on the command line, print each event as sent (JSON
Lines) and print nothing else. Imports only the standard library and yieldmeter_sdk."""

import sys
from datetime import datetime, timezone

from yieldmeter_sdk import TokenUsage, UsageProducer, usage_event
from yieldmeter_sdk.contracts import to_json_bytes

bootstrap, prefix = sys.argv[1], sys.argv[2]
at = datetime(2026, 11, 3, 12, 0, tzinfo=timezone.utc)  # inside the simulated fortnight's prices
who = {"org_id": "acme", "team": "support", "user_id": "u-sdk", "app": "helpdesk", "session_id": prefix}
openai_chat = {  # an OpenAI Chat Completions response, as its SDK's model_dump() gives it
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
    "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
              "prompt_tokens_details": {"cached_tokens": 1024}},
}
anthropic_message = {  # an Anthropic Messages response
    "id": "msg_1", "type": "message", "model": "claude-3-5-haiku-20241022",
    "usage": {"input_tokens": 900, "output_tokens": 250, "cache_read_input_tokens": 2000,
              "cache_creation_input_tokens": 100},
}

with UsageProducer(bootstrap) as producer:
    producer.check()
    sent = [
        producer.record_openai(openai_chat, event_id=prefix + "-openai", occurred_at=at, latency_ms=900, **who),
        producer.record_anthropic(anthropic_message, event_id=prefix + "-anthropic", occurred_at=at, **who),
        producer.send_usage(usage_event(TokenUsage(5000, 800, reasoning_tokens=300), provider="openai", model="o3-mini",
                                        event_id=prefix + "-usage", occurred_at=at, **who)),
        producer.record_outcome("ticket_resolved", True, outcome_id=prefix + "-outcome", occurred_at=at,
                                value_usd="12.50", **who),
    ]
for event in sent:
    print(to_json_bytes(event).decode())
