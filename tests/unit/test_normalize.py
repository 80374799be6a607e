"""Provider usage payloads -> TokenUsage, and model ids -> catalogue ids, table-driven."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from yieldmeter.normalize import (
    ADAPTERS,
    TokenUsage,
    UsageFormatError,
    extract_usage,
    from_anthropic,
    from_anthropic_stream,
    from_bedrock_converse,
    from_gemini,
    from_openai_chat,
    from_openai_responses,
    from_openai_stream,
    from_otel,
    normalize_model,
)

pytestmark = pytest.mark.unit

PAYLOADS = Path(__file__).parent / "fixtures" / "provider_payloads"


def load(name: str):
    return json.loads((PAYLOADS / name).read_text())


def usage(i: int, o: int, read: int = 0, write: int = 0, reasoning: int = 0) -> TokenUsage:
    return TokenUsage(input_tokens=i, output_tokens=o, cache_read_tokens=read, cache_write_tokens=write,
                      reasoning_tokens=reasoning)


# --- whole documented responses ---------------------------------------------------------------

RESPONSES = [
    # fixture, adapter, expected
    ("openai_chat_cached.json", from_openai_chat, usage(2006, 300, read=1920)),
    ("openai_chat_reasoning.json", from_openai_chat, usage(75, 1186, reasoning=1024)),
    ("openai_responses.json", from_openai_responses, usage(5200, 1800, read=4096, reasoning=1344)),
    # 50 uncached + 2048 written + 10000 read: Anthropic's input_tokens excludes both cache counts.
    ("anthropic_message_cached.json", from_anthropic, usage(12098, 503, read=10000, write=2048)),
    # prompt 12000 (includes 8000 cached) + 50 tool-use prompt; candidates 400 + thoughts 1200.
    ("gemini_generate_content.json", from_gemini, usage(12050, 1600, read=8000, reasoning=1200)),
    # 120 + 4000 read + 1000 written; matches the payload's totalTokens 5420 - 300 output.
    ("bedrock_converse_cached.json", from_bedrock_converse, usage(5120, 300, read=4000, write=1000)),
    ("otel_span.json", from_otel, usage(100, 180, read=50, reasoning=20)),
]


@pytest.mark.parametrize(("fixture", "adapter", "expected"), RESPONSES, ids=[r[0] for r in RESPONSES])
def test_documented_response(fixture, adapter, expected):
    payload = load(fixture)
    assert adapter(payload) == expected
    # The bare usage object works as well as the whole response.
    inner = payload.get("usage") or payload.get("usageMetadata") or payload["attributes"]
    assert adapter(inner) == expected


GENAI_PRICES_FLAVOURS = [
    ("openai_chat_cached.json", "openai", "chat", from_openai_chat),
    ("openai_chat_reasoning.json", "openai", "chat", from_openai_chat),
    ("openai_responses.json", "openai", "responses", from_openai_responses),
    ("anthropic_message_cached.json", "anthropic", "default", from_anthropic),
    ("gemini_generate_content.json", "google", "default", from_gemini),
    ("bedrock_converse_cached.json", "aws", "default", from_bedrock_converse),
]


@pytest.mark.parametrize(("fixture", "provider_id", "flavour", "adapter"), GENAI_PRICES_FLAVOURS,
                         ids=[f[0] for f in GENAI_PRICES_FLAVOURS])
def test_agrees_with_genai_prices_extractors(fixture, provider_id, flavour, adapter):
    """genai-prices is maintained against the providers' APIs: an independent second opinion."""
    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    provider = find_provider_by_id(get_snapshot().providers, provider_id)
    _, theirs = provider.extract_usage(load(fixture), api_flavor=flavour)
    ours = adapter(load(fixture))
    assert ours.input_tokens == theirs.input_tokens
    assert ours.output_tokens == theirs.output_tokens
    assert ours.cache_read_tokens == (theirs.cache_read_tokens or 0)
    assert ours.cache_write_tokens == (theirs.cache_write_tokens or 0)
    assert ours.reasoning_tokens == (theirs.output_reasoning_tokens or 0)


# --- edge cases on bare usage objects ----------------------------------------------------------

EDGE_CASES = [
    # OpenAI Chat
    ("openai.chat", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, usage(0, 0)),
    ("openai.chat", {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": None,
                     "completion_tokens_details": None}, usage(10, 5)),
    ("openai.chat", {"prompt_tokens": 1024, "completion_tokens": 5,
                     "prompt_tokens_details": {"cached_tokens": 1024}}, usage(1024, 5, read=1024)),
    ("openai.chat", {"prompt_tokens": 2000, "completion_tokens": 5,
                     "prompt_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 976}},
     usage(2000, 5, read=1024, write=976)),
    ("openai.chat", {"prompt_tokens": 9, "completion_tokens": 700,
                     "completion_tokens_details": {"reasoning_tokens": 700}}, usage(9, 700, reasoning=700)),
    # OpenAI Responses
    ("openai.responses", {"input_tokens": 3, "output_tokens": 4}, usage(3, 4)),
    ("openai.responses", {"input_tokens": 3, "output_tokens": 4, "input_tokens_details": {},
                          "output_tokens_details": {"reasoning_tokens": 0}}, usage(3, 4)),
    # Anthropic
    ("anthropic.messages", {"input_tokens": 0, "output_tokens": 0}, usage(0, 0)),
    ("anthropic.messages", {"input_tokens": 3, "output_tokens": 1, "cache_creation_input_tokens": None,
                            "cache_read_input_tokens": None}, usage(3, 1)),
    ("anthropic.messages", {"input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": 100000},
     usage(100003, 1, read=100000)),
    # only the per-TTL breakdown of cache writes
    ("anthropic.messages", {"input_tokens": 3, "output_tokens": 1,
                            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 50}},
     usage(153, 1, write=150)),
    # the total wins over the breakdown when both are present
    ("anthropic.messages", {"input_tokens": 3, "output_tokens": 1, "cache_creation_input_tokens": 150,
                            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 50}},
     usage(153, 1, write=150)),
    ("anthropic.messages", {"input_tokens": 3, "output_tokens": 900,
                            "output_tokens_details": {"thinking_tokens": 850}}, usage(3, 900, reasoning=850)),
    # Gemini: zero counts are omitted from the JSON; snake_case from the google-genai SDK
    ("gemini", {"promptTokenCount": 8, "totalTokenCount": 8}, usage(8, 0)),
    ("gemini", {"prompt_token_count": 8, "candidates_token_count": 2, "thoughts_token_count": 5,
                "cached_content_token_count": 4}, usage(8, 7, read=4, reasoning=5)),
    ("gemini", {"promptTokenCount": 8, "candidatesTokenCount": 0, "thoughtsTokenCount": None}, usage(8, 0)),
    ("gemini", {"usage_metadata": {"prompt_token_count": 1, "candidates_token_count": 1}}, usage(1, 1)),
    # Bedrock
    ("bedrock.converse", {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}, usage(0, 0)),
    ("bedrock.converse", {"inputTokens": 7, "outputTokens": 1, "cacheReadInputTokens": 0,
                          "cacheWriteInputTokens": 2048}, usage(2055, 1, write=2048)),
    # OTel, current and deprecated names
    ("otel", {"gen_ai.usage.input_tokens": 1, "gen_ai.usage.output_tokens": 2}, usage(1, 2)),
    ("otel", {"gen_ai.usage.prompt_tokens": 1, "gen_ai.usage.completion_tokens": 2}, usage(1, 2)),
]


@pytest.mark.parametrize(("api", "payload", "expected"), EDGE_CASES)
def test_edge_cases(api, payload, expected):
    assert extract_usage(api, payload) == expected


BAD = [
    # api, payload, words the error must contain
    ("openai.chat", {"completion_tokens": 1}, ["prompt_tokens", "missing"]),
    ("openai.chat", {"prompt_tokens": 1}, ["completion_tokens", "missing"]),
    ("openai.chat", {"prompt_tokens": -1, "completion_tokens": 1}, ["prompt_tokens", "between 0"]),
    ("openai.chat", {"prompt_tokens": "12", "completion_tokens": 1}, ["prompt_tokens", "integer"]),
    ("openai.chat", {"prompt_tokens": 1.5, "completion_tokens": 1}, ["prompt_tokens", "integer"]),
    ("openai.chat", {"prompt_tokens": True, "completion_tokens": 1}, ["prompt_tokens", "integer"]),
    ("openai.chat", {"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 11}},
     ["cache_read_tokens", "exceed input_tokens"]),
    ("openai.chat", {"prompt_tokens": 10, "completion_tokens": 1,
                     "completion_tokens_details": {"reasoning_tokens": 2}}, ["reasoning_tokens", "exceed"]),
    ("openai.responses", {"input_tokens": 1}, ["output_tokens", "missing"]),
    ("openai.responses", {"input_tokens": 1, "output_tokens": 1, "input_tokens_details": {"cached_tokens": -3}},
     ["input_tokens_details.cached_tokens"]),
    ("anthropic.messages", {"output_tokens": 1}, ["input_tokens", "missing"]),
    ("anthropic.messages", {"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": -5},
     ["cache_read_input_tokens"]),
    ("anthropic.messages", {"input_tokens": 1, "output_tokens": 10**10}, ["output_tokens", "between 0"]),
    ("gemini", {"totalTokenCount": 5}, ["no token counts"]),
    ("gemini", {"promptTokenCount": 5, "cachedContentTokenCount": 6}, ["exceed input_tokens"]),
    ("gemini", {"promptTokenCount": -5}, ["promptTokenCount"]),
    ("bedrock.converse", {"outputTokens": 1}, ["inputTokens", "missing"]),
    ("bedrock.converse", {"inputTokens": 1, "outputTokens": "many"}, ["outputTokens", "integer"]),
    ("otel", {"gen_ai.usage.output_tokens": 1}, ["gen_ai.usage.input_tokens", "missing"]),
    ("openai.chat", [1, 2], ["mapping"]),
    ("openai.chat", {"usage": 5}, ["'usage' must be a mapping"]),
]


@pytest.mark.parametrize(("api", "payload", "words"), BAD)
def test_bad_payloads_name_the_key(api, payload, words):
    with pytest.raises(UsageFormatError) as caught:
        extract_usage(api, payload)
    for word in words:
        assert word in str(caught.value)


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(UsageFormatError, match="openai.chat"):
        extract_usage("cohere", {})
    assert set(ADAPTERS) == {"openai.chat", "openai.responses", "anthropic.messages", "gemini",
                             "bedrock.converse", "otel"}


# --- SDK objects -------------------------------------------------------------------------------


class PromptDetails(BaseModel):  # shaped like openai.types.completion_usage.PromptTokensDetails
    cached_tokens: int | None = None


class CompletionUsage(BaseModel):  # shaped like openai.types.CompletionUsage
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptDetails | None = None


class ChatCompletion(BaseModel):
    model: str
    usage: CompletionUsage | None = None


class DictLike:  # objects that offer to_dict(), as some SDKs do
    def __init__(self, data):
        self.data = data

    def to_dict(self):
        return self.data


def test_sdk_objects_are_dumped():
    response = ChatCompletion(model="gpt-4o", usage=CompletionUsage(
        prompt_tokens=10, completion_tokens=2, total_tokens=12, prompt_tokens_details=PromptDetails(cached_tokens=8)))
    assert from_openai_chat(response) == usage(10, 2, read=8)
    assert from_openai_chat(response.usage) == usage(10, 2, read=8)
    assert from_bedrock_converse(DictLike({"usage": {"inputTokens": 1, "outputTokens": 2}})) == usage(1, 2)
    with pytest.raises(UsageFormatError, match="SDK response object"):
        from_openai_chat(object())


# --- streaming ---------------------------------------------------------------------------------


def test_openai_chat_stream_takes_the_final_usage_chunk():
    assert from_openai_stream(load("openai_chat_stream.json")) == usage(1500, 12, read=1280)
    chunks = [ChatCompletion(model="gpt-4o"), ChatCompletion(model="gpt-4o", usage=CompletionUsage(
        prompt_tokens=3, completion_tokens=4, total_tokens=7))]
    assert from_openai_stream(iter(chunks)) == usage(3, 4)


def test_openai_responses_stream_reads_response_completed():
    assert from_openai_stream(load("openai_responses_stream.json")) == usage(37, 220, reasoning=192)


def test_openai_stream_without_usage_says_how_to_get_it():
    chunks = [c for c in load("openai_chat_stream.json") if c["usage"] is None]
    with pytest.raises(UsageFormatError, match="include_usage"):
        from_openai_stream(chunks)


def test_anthropic_stream_keeps_the_latest_cumulative_delta():
    # Two message_delta events (40 then 89 cumulative): 89 output tokens, not 129.
    assert from_anthropic_stream(load("anthropic_stream.json")) == usage(3472, 89, read=3000)


def test_anthropic_stream_takes_input_from_the_delta_when_start_reports_zero():
    # Some Anthropic-compatible gateways report input_tokens 0 at message_start and the count later.
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 0, "output_tokens": 1}}},
        {"type": "message_delta", "delta": {}, "usage": {"input_tokens": 9, "output_tokens": 30,
                                                          "cache_read_input_tokens": None}},
    ]
    assert from_anthropic_stream(events) == usage(9, 30)


def test_anthropic_stream_without_usage_is_an_error():
    with pytest.raises(UsageFormatError, match="message_start"):
        from_anthropic_stream([{"type": "ping"}])


# --- TokenUsage itself -------------------------------------------------------------------------


def test_token_usage_fills_usage_event_fields():
    from yieldmeter.contracts import UsageEvent

    tokens = from_anthropic(load("anthropic_message_cached.json"))
    event = UsageEvent(event_id="e", occurred_at="2026-01-01T00:00:00Z", org_id="o", team="t", user_id="u",
                       app="a", provider="anthropic", request_model="claude-sonnet-4-5", **tokens.as_event_fields())
    assert (event.input_tokens, event.cache_write_tokens, event.uncached_input_tokens) == (12098, 2048, 50)
    assert tokens.uncached_input_tokens == 50


@pytest.mark.parametrize("kwargs", [
    {"input_tokens": -1, "output_tokens": 0},
    {"input_tokens": True, "output_tokens": 0},
    {"input_tokens": 1, "output_tokens": 0, "cache_read_tokens": 1, "cache_write_tokens": 1},
    {"input_tokens": 1, "output_tokens": 0, "reasoning_tokens": 1},
])
def test_token_usage_rejects_inconsistent_counts(kwargs):
    with pytest.raises(UsageFormatError):
        TokenUsage(**kwargs)


# --- model ids ---------------------------------------------------------------------------------

MODELS = [
    # provider, as sent, normalised
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("openai", "GPT-4o", "gpt-4o"),
    ("openai", "openai/gpt-4o", "gpt-4o"),
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("openai", "o3-mini-2025-01-31", "o3-mini"),
    # a dated snapshot with its own price stays its own model ($5/$15 against gpt-4o's $2.50/$10)
    ("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
    # unknown date of a known model: the date goes, the catalogue id comes back
    ("openai", "gpt-4o-2099-01-01", "gpt-4o"),
    ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("anthropic", "claude-3-5-sonnet-20240620", "claude-3-5-sonnet"),
    ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4-0"),
    ("anthropic", "claude-new-9-20300101", "claude-new-9"),
    # Bedrock: the genai-prices Bedrock id, which keeps the endpoint scope that changes the price
    ("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
     "regional.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "regional.anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ("aws.bedrock", "global.anthropic.claude-opus-4-5-20251101-v1:0", "global.anthropic.claude-opus-4-5-v1:0"),
    ("aws.bedrock", "eu.anthropic.claude-opus-4-5-20251101-v1:0", "regional.anthropic.claude-opus-4-5-v1:0"),
    ("aws.bedrock",
     "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
     "regional.anthropic.claude-3-7-sonnet-20250219-v1:0"),
    ("aws.bedrock", "anthropic.claude-v2:1", "anthropic.claude-v2:1"),  # v2:1 IS the model (Claude 2.1)
    ("aws.bedrock", "us.amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"),
    ("gcp.gemini", "models/gemini-1.5-pro", "gemini-1.5-pro"),
    ("gcp.gemini", "gemini-1.5-pro-002", "gemini-1.5-pro"),
    ("google", "gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("google", "gemini-9.0-ultra-001", "gemini-9.0-ultra"),  # unknown: stable-version suffix dropped
    ("gcp.vertex_ai", "publishers/google/models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
    ("azure.ai.openai", "gpt-4o-2024-11-20", "gpt-4o"),
    ("azure.ai.openai", "my-deployment", "my-deployment"),
    ("openrouter", "openai/gpt-4o", "openai/gpt-4o"),  # OpenRouter's own catalogue ids keep the path
    ("some-gateway", "claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("some-gateway", "foo-bar-2024-01-01", "foo-bar"),
    ("some-gateway", "foo-bar@20240101", "foo-bar"),
]


@pytest.mark.parametrize(("provider", "model", "expected"), MODELS)
def test_normalize_model(provider, model, expected):
    assert normalize_model(provider, model) == expected
    assert normalize_model(provider, expected) == expected  # idempotent


@pytest.mark.parametrize("provider_id", ["openai", "anthropic", "google", "aws", "azure", "mistral", "x-ai"])
def test_every_catalogue_id_normalises_to_itself(provider_id):
    """The price catalog is seeded with genai-prices ids: each must survive normalisation."""
    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    provider = find_provider_by_id(get_snapshot().providers, provider_id)
    changed = {m.id: normalize_model(provider_id, m.id) for m in provider.models}
    assert {k: v for k, v in changed.items() if k != v} == {}


def test_empty_model_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        normalize_model("openai", "  ")
