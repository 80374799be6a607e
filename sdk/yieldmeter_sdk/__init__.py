"""yieldmeter's producer SDK: send one event per model call and one per business outcome to Kafka.

    from yieldmeter_sdk import UsageProducer

    with UsageProducer("127.0.0.1:9092") as producer:
        producer.record_openai(response, org_id="acme", team="support", user_id="u42", app="helpdesk")

The contracts (:mod:`yieldmeter_sdk.contracts`) and the usage adapters
(:mod:`yieldmeter_sdk.normalize`) live here, in one copy; the application (``yieldmeter``)
depends on this distribution and re-exports them as ``yieldmeter.sdk``, ``yieldmeter.contracts``.
"""

from yieldmeter_sdk.contracts import ContractError, OutcomeEvent, UsageEvent, parse_outcome, parse_usage
from yieldmeter_sdk.errors import YieldmeterError
from yieldmeter_sdk.normalize import TokenUsage, UsageFormatError
from yieldmeter_sdk.producer import (
    DeliveryError,
    FailedDelivery,
    ProducerSettings,
    UsageProducer,
    event_from_anthropic,
    event_from_gemini,
    event_from_openai,
    outcome_event,
    session_key,
    usage_event,
)

__all__ = [
    "ContractError", "DeliveryError", "FailedDelivery", "OutcomeEvent", "ProducerSettings", "TokenUsage",
    "UsageEvent", "UsageFormatError", "UsageProducer", "YieldmeterError", "event_from_anthropic",
    "event_from_gemini", "event_from_openai", "outcome_event", "parse_outcome", "parse_usage",
    "session_key", "usage_event",
]
