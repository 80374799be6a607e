"""Provider usage payloads -> one token vocabulary.

Every provider counts tokens its own way. yieldmeter uses the OpenTelemetry GenAI meaning
everywhere (:class:`TokenUsage`): ``input_tokens`` is ALL input, cached tokens included;
``output_tokens`` is ALL output, reasoning included; cache and reasoning counts are parts
of those totals. The adapters below translate each provider's documented usage object:

======================  ===================================================================
provider / API          what the provider reports                    -> what we do
======================  ===================================================================
OpenAI Chat             prompt_tokens INCLUDES prompt_tokens_details.   take as is
                        cached_tokens; completion_tokens INCLUDES
                        completion_tokens_details.reasoning_tokens
OpenAI Responses        input_tokens INCLUDES input_tokens_details.     take as is
                        cached_tokens; output_tokens INCLUDES
                        output_tokens_details.reasoning_tokens
Anthropic Messages      input_tokens EXCLUDES cache_creation_input_     input = sum of the three
                        tokens and cache_read_input_tokens; thinking
                        is inside output_tokens (broken out only in
                        newer output_tokens_details.thinking_tokens)
Gemini usageMetadata    promptTokenCount INCLUDES cachedContent-        input = prompt + toolUse;
                        TokenCount; candidatesTokenCount EXCLUDES       output = candidates +
                        thoughtsTokenCount; toolUsePromptTokenCount     thoughts
                        is extra input
Bedrock Converse        inputTokens EXCLUDES cacheReadInputTokens and   input = sum of the three
                        cacheWriteInputTokens; reasoning not broken out
OTel GenAI attributes   gen_ai.usage.input_tokens includes cached       take as is
======================  ===================================================================

Sources checked (2026-11, through SDK and API references that mirror the providers' docs):
- genai-prices' own extractors (anthropic 'default', openai 'chat'/'responses', google
  'default', aws 'default') add and split exactly as above; tests/unit/test_normalize.py
  checks the adapters against them;
- OpenAI: stream_options.include_usage "an additional chunk ... the choices field will always
  be an empty array. All other chunks will also include a usage field, but with a null value";
- Anthropic SDKs, MessageDeltaUsage: "The cumulative number of output tokens"; newer API
  versions report thinking in usage.output_tokens_details.thinking_tokens, as a part of
  output_tokens, not an addition;
- Gemini UsageMetadata: prompt_token_count "includes the number of tokens in the cached
  content"; total_token_count = prompt + candidates + tool_use_prompt + thoughts;
- Bedrock: inputTokens excludes cache reads and writes (genai-prices' aws extractor; also a
  merged opencode fix that had first assumed the opposite);
- OTel semconv: gen_ai.usage.cache_read.input_tokens "SHOULD be included in
  gen_ai.usage.input_tokens"; gen_ai.usage.output_tokens includes reasoning tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from yieldmeter_sdk.contracts import MAX_COUNT
from yieldmeter_sdk.errors import YieldmeterError


class UsageFormatError(YieldmeterError, ValueError):
    """A usage payload is not shaped as its provider documents it; the message names the key."""


@dataclass(frozen=True)
class TokenUsage:
    """Token counts of one call in OTel GenAI terms (the token fields of UsageEvent)."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if type(value) is not int or not 0 <= value <= MAX_COUNT:
                raise UsageFormatError(f"{name} must be an integer between 0 and {MAX_COUNT}, got {value!r}")
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise UsageFormatError(
                f"cache_read_tokens + cache_write_tokens ({self.cache_read_tokens + self.cache_write_tokens}) "
                f"exceed input_tokens ({self.input_tokens})"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise UsageFormatError(
                f"reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens ({self.output_tokens})"
            )

    def as_event_fields(self) -> dict[str, int]:
        """Keyword arguments for UsageEvent: ``UsageEvent(**common, **usage.as_event_fields())``."""
        return asdict(self)

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens


# --- reading payloads ------------------------------------------------------------------------


def as_dict(obj: Any, what: str = "payload") -> Any:
    """SDK response objects (pydantic: openai, anthropic, google-genai) -> dicts; boto3 gives dicts."""
    if isinstance(obj, Mapping) or obj is None:
        return obj
    for method in ("model_dump", "to_dict"):
        if callable(getattr(obj, method, None)):
            return getattr(obj, method)()
    raise UsageFormatError(f"{what} must be a mapping or an SDK response object, got {type(obj).__name__}")


def _root(payload: Any, *keys: str) -> Mapping[str, Any]:
    """Accept the usage object itself or a whole response that holds it under one of ``keys``."""
    data = as_dict(payload)
    if not isinstance(data, Mapping):
        raise UsageFormatError(f"payload must be a mapping, got {type(data).__name__}")
    for key in keys:
        if data.get(key) is not None:
            inner = as_dict(data[key], f"'{key}'")
            if not isinstance(inner, Mapping):
                raise UsageFormatError(f"'{key}' must be a mapping, got {type(inner).__name__}")
            return inner
    return data


def _count(data: Mapping[str, Any], *path: str, required: bool = False, where: str = "") -> int:
    """The integer at ``path``; absent or null optional values count as 0."""
    value: Any = data
    for i, key in enumerate(path):
        value = as_dict(value)
        value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            if required:
                raise UsageFormatError(f"{where}missing required key '{'.'.join(path[: i + 1])}'")
            return 0
    if type(value) is not int:  # not isinstance: bool is an int subclass
        raise UsageFormatError(f"{where}'{'.'.join(path)}' must be an integer, got {value!r}")
    if not 0 <= value <= MAX_COUNT:
        raise UsageFormatError(f"{where}'{'.'.join(path)}' must be between 0 and {MAX_COUNT}, got {value}")
    return value


def _first_key(data: Mapping[str, Any], *names: str) -> str | None:
    return next((name for name in names if data.get(name) is not None), None)


# --- adapters --------------------------------------------------------------------------------


def from_openai_chat(payload: Any) -> TokenUsage:
    """OpenAI Chat Completions ``usage`` (also Azure OpenAI and OpenAI-compatible servers)."""
    u, w = _root(payload, "usage"), "openai chat usage: "
    return TokenUsage(
        input_tokens=_count(u, "prompt_tokens", required=True, where=w),
        cache_read_tokens=_count(u, "prompt_tokens_details", "cached_tokens", where=w),
        # Newer responses report cache writes too; like cached_tokens they are part of prompt_tokens.
        cache_write_tokens=_count(u, "prompt_tokens_details", "cache_write_tokens", where=w),
        output_tokens=_count(u, "completion_tokens", required=True, where=w),
        reasoning_tokens=_count(u, "completion_tokens_details", "reasoning_tokens", where=w),
    )


def from_openai_responses(payload: Any) -> TokenUsage:
    """OpenAI Responses API ``usage``."""
    u, w = _root(payload, "usage"), "openai responses usage: "
    return TokenUsage(
        input_tokens=_count(u, "input_tokens", required=True, where=w),
        cache_read_tokens=_count(u, "input_tokens_details", "cached_tokens", where=w),
        cache_write_tokens=_count(u, "input_tokens_details", "cache_write_tokens", where=w),
        output_tokens=_count(u, "output_tokens", required=True, where=w),
        reasoning_tokens=_count(u, "output_tokens_details", "reasoning_tokens", where=w),
    )


def from_anthropic(payload: Any) -> TokenUsage:
    """Anthropic Messages ``usage`` (also Claude on Bedrock InvokeModel and Vertex rawPredict)."""
    u, w = _root(payload, "usage"), "anthropic usage: "
    uncached = _count(u, "input_tokens", required=True, where=w)
    read = _count(u, "cache_read_input_tokens", where=w)
    if u.get("cache_creation_input_tokens") is not None:
        write = _count(u, "cache_creation_input_tokens", where=w)
    else:  # only the per-TTL breakdown was sent
        write = _count(u, "cache_creation", "ephemeral_5m_input_tokens", where=w) + _count(
            u, "cache_creation", "ephemeral_1h_input_tokens", where=w
        )
    return TokenUsage(
        input_tokens=uncached + read + write,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=_count(u, "output_tokens", required=True, where=w),
        # Thinking is billed inside output_tokens; only newer responses break it out.
        reasoning_tokens=_count(u, "output_tokens_details", "thinking_tokens", where=w),
    )


_GEMINI_KEYS = {  # camelCase (REST) -> snake_case (google-genai SDK model_dump)
    "promptTokenCount": "prompt_token_count",
    "cachedContentTokenCount": "cached_content_token_count",
    "candidatesTokenCount": "candidates_token_count",
    "thoughtsTokenCount": "thoughts_token_count",
    "toolUsePromptTokenCount": "tool_use_prompt_token_count",
}


def from_gemini(payload: Any) -> TokenUsage:
    """Gemini ``usageMetadata`` (Gemini API and Vertex AI), camelCase or snake_case keys.

    Gemini's JSON omits zero counts (proto3), so every count is optional, but at least one
    must be present.
    """
    u, w = _root(payload, "usageMetadata", "usage_metadata"), "gemini usageMetadata: "
    counts = {}
    for camel, snake in _GEMINI_KEYS.items():
        key = _first_key(u, camel, snake)
        counts[camel] = _count(u, key, where=w) if key else 0
    if not any(_first_key(u, *pair) for pair in _GEMINI_KEYS.items()):
        raise UsageFormatError(f"{w}no token counts (expected promptTokenCount, candidatesTokenCount ...)")
    return TokenUsage(
        input_tokens=counts["promptTokenCount"] + counts["toolUsePromptTokenCount"],
        cache_read_tokens=counts["cachedContentTokenCount"],
        output_tokens=counts["candidatesTokenCount"] + counts["thoughtsTokenCount"],
        reasoning_tokens=counts["thoughtsTokenCount"],
    )


def from_bedrock_converse(payload: Any) -> TokenUsage:
    """AWS Bedrock Converse / ConverseStream ``usage`` (TokenUsage)."""
    u, w = _root(payload, "usage"), "bedrock converse usage: "
    read = _count(u, "cacheReadInputTokens", where=w)
    write = _count(u, "cacheWriteInputTokens", where=w)
    return TokenUsage(
        input_tokens=_count(u, "inputTokens", required=True, where=w) + read + write,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=_count(u, "outputTokens", required=True, where=w),
    )


_OTEL_DEPRECATED = {  # current name -> names older instrumentations still emit
    "gen_ai.usage.input_tokens": "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.output_tokens": "gen_ai.usage.completion_tokens",
}


def from_otel(attributes: Any) -> TokenUsage:
    """OpenTelemetry GenAI span attributes (flat dotted keys), already in our meaning."""
    a, w = _root(attributes, "attributes"), "otel attributes: "

    def get(name: str, required: bool = False) -> int:
        key = _first_key(a, name, _OTEL_DEPRECATED.get(name, name)) or name
        return _count(a, key, required=required, where=w)

    return TokenUsage(
        input_tokens=get("gen_ai.usage.input_tokens", required=True),
        cache_read_tokens=get("gen_ai.usage.cache_read.input_tokens"),
        cache_write_tokens=get("gen_ai.usage.cache_creation.input_tokens"),
        output_tokens=get("gen_ai.usage.output_tokens", required=True),
        reasoning_tokens=get("gen_ai.usage.reasoning.output_tokens"),
    )


# --- streaming -------------------------------------------------------------------------------


def from_openai_stream(chunks: Iterable[Any]) -> TokenUsage:
    """Usage of a streamed OpenAI call.

    Chat Completions: with ``stream_options={"include_usage": True}`` the last chunk before
    ``[DONE]`` has empty ``choices`` and the usage; every other chunk has ``usage: null``.
    Responses API: the ``response.completed`` event carries ``response.usage``.
    """
    usage, adapter = None, from_openai_chat
    for raw in chunks:
        chunk = as_dict(raw)
        if not isinstance(chunk, Mapping):
            continue
        if chunk.get("type") == "response.completed":
            usage, adapter = (as_dict(chunk.get("response")) or {}).get("usage"), from_openai_responses
        elif chunk.get("usage") is not None:
            usage = chunk["usage"]
    if usage is None:
        raise UsageFormatError(
            "openai stream: no chunk carries usage; request with stream_options={'include_usage': True} "
            "(an interrupted stream never sends its usage chunk)"
        )
    return adapter(usage)


def from_anthropic_stream(events: Iterable[Any]) -> TokenUsage:
    """Usage of a streamed Anthropic call.

    ``message_start`` carries ``message.usage`` (input and cache counts, output so far);
    each ``message_delta`` carries ``usage`` whose counts are CUMULATIVE, so the latest
    non-null value of each key wins; summing deltas would double count.
    """
    merged: dict[str, Any] = {}
    for raw in events:
        event = as_dict(raw)
        if not isinstance(event, Mapping):
            continue
        if event.get("type") == "message_start":
            usage = as_dict((as_dict(event.get("message")) or {}).get("usage"))
        elif event.get("type") == "message_delta":
            usage = as_dict(event.get("usage"))
        else:
            continue
        merged.update({k: v for k, v in (usage or {}).items() if v is not None})
    if not merged:
        raise UsageFormatError("anthropic stream: no message_start or message_delta event carries usage")
    return from_anthropic(merged)


ADAPTERS: dict[str, Callable[[Any], TokenUsage]] = {
    "openai.chat": from_openai_chat,
    "openai.responses": from_openai_responses,
    "anthropic.messages": from_anthropic,
    "gemini": from_gemini,
    "bedrock.converse": from_bedrock_converse,
    "otel": from_otel,
}


def extract_usage(api: str, payload: Any) -> TokenUsage:
    """``extract_usage("anthropic.messages", response)``; ``api`` is a key of :data:`ADAPTERS`."""
    try:
        adapter = ADAPTERS[api]
    except KeyError:
        raise UsageFormatError(f"unknown usage format '{api}'; known: {', '.join(ADAPTERS)}") from None
    return adapter(payload)
