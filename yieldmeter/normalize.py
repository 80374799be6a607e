"""Model ids -> the price catalogue's ids, and provider spellings -> one canonical name.

The usage adapters (provider usage payloads -> :class:`TokenUsage`) live in the producer SDK,
yieldmeter_sdk.normalize, and are re-exported here: ``from yieldmeter.normalize import
from_openai_chat`` keeps working.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from yieldmeter_sdk.normalize import *  # noqa: F403 -- the usage adapters, one copy in the SDK
from yieldmeter_sdk.normalize import ADAPTERS, TokenUsage, UsageFormatError, extract_usage  # noqa: F401


# --- model ids -------------------------------------------------------------------------------
#
# The rule, in order (normalize_model):
#  1. trim and lower-case; drop an ARN or path prefix up to the last '/'
#     ("models/gemini-1.5-pro", "openai/gpt-4o", "arn:aws:bedrock:...:inference-profile/us.anthropic...")
#     unless the provider's catalogue knows the full string (OpenRouter ids are "openai/gpt-4o");
#  2. an explicit alias table;
#  3. genai-prices' catalogue for the provider: its match rules map every dated or aliased
#     id of a model to one catalogue id, and the price catalog is seeded with exactly those
#     ids, so a normalised id always finds its price;
#  4. otherwise a heuristic: drop a trailing date (-2024-08-06, -20241022, @20241022) and
#     Gemini's stable-version suffix (-001, -002), then ask the catalogue once more.
#
# Deliberate exceptions:
#  - a date is NOT stripped when the catalogue knows the dated id: gpt-4o-2024-05-13 costs
#    $5/$15 per MTok, gpt-4o $2.50/$10, so they stay two models;
#  - AWS Bedrock ids are never stripped: Bedrock's "-vN:M" suffix is sometimes the model's
#    own generation (anthropic.claude-v2:1 is Claude 2.1; claude-3-5-sonnet-20241022-v2:0 is
#    "3.5 Sonnet v2"), and Bedrock prices differ by endpoint scope (regional endpoints cost 10%
#    more than global ones for newer Claude models), so a Bedrock id normalises to the
#    genai-prices Bedrock catalogue id ("regional.anthropic.claude-3-5-sonnet-20241022-v2:0"),
#    or stays the Bedrock id as sent when the catalogue does not know it.

MODEL_ALIASES: dict[str, str] = {
    # Floating names -> the model they stand for. The catalogue already resolves most of these
    # for the providers it knows; the table matters for providers it does not (gateways,
    # proxies). Add site-specific names here.
    "claude-3-5-sonnet-latest": "claude-3-5-sonnet",
}

# --- provider ids ------------------------------------------------------------------------------
#
# Producers spell providers many ways (docs/pricing.md). Every call's provider is normalised
# once, by normalize_provider, to a canonical name: the OpenTelemetry gen_ai.provider.name
# well-known value where OpenTelemetry has one, else genai-prices' provider id. The price
# catalog is seeded under every canonical name of each genai-prices provider.

# genai-prices provider id -> its canonical names, where they are not the id itself. The first
# name is where genai-prices' own id (and its provider_match rules) lead: "google" is any
# Google generative AI endpoint (gcp.gen_ai), Gemini API and Vertex AI are told apart by name.
OTEL_PROVIDERS: dict[str, tuple[str, ...]] = {
    "google": ("gcp.gen_ai", "gcp.gemini", "gcp.vertex_ai"),
    "aws": ("aws.bedrock",),
    "azure": ("azure.ai.openai", "azure.ai.inference"),
    "mistral": ("mistral_ai",),
    "x-ai": ("x_ai",),
}

# Canonical name -> genai-prices provider id, for the names that differ from their id. Without
# this, genai-prices' own matching sends "azure.ai.openai" to openai ('openai' in the name) and
# knows neither "x_ai" nor "gcp.gen_ai".
PROVIDER_CATALOGUE: dict[str, str] = {name: gp for gp, names in OTEL_PROVIDERS.items() for name in names}

# Spellings the rules below would get wrong or not at all -> canonical name: gateways' names
# (LiteLLM's custom_llm_provider values), SDK names, and OTel's deprecated gen_ai.system values.
PROVIDER_SPELLINGS: dict[str, str] = {
    "gemini": "gcp.gemini",
    "google_ai_studio": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "amazon_bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure.openai": "azure.ai.openai",
    "az.ai.openai": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "az.ai.inference": "azure.ai.inference",
    "mistralai": "mistral_ai",
    "codestral": "mistral_ai",
    "xai": "x_ai",
    "grok": "x_ai",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "fireworks-ai": "fireworks",
    "moonshot": "moonshotai",
    "cohere_chat": "cohere",
    "text-completion-openai": "openai",
    "watsonx": "ibm.watsonx.ai",
    "voyage": "voyageai",
}


def canonical_names(provider_id: str) -> tuple[str, ...]:
    """The canonical provider names of one genai-prices provider (its first is its own)."""
    return OTEL_PROVIDERS.get(provider_id, (provider_id,))


@lru_cache(maxsize=4096)
def normalize_provider(provider: str) -> str:
    """The canonical provider of a name as producers send it (docs/pricing.md):
    the spelling table, a canonical name as it is, genai-prices' provider id, then its
    provider_match rules (in catalogue order); else the name as sent, trimmed and lower-cased."""
    name = provider.strip().lower()
    if name in PROVIDER_SPELLINGS:
        return PROVIDER_SPELLINGS[name]
    if name in PROVIDER_CATALOGUE:
        return name
    providers = _catalogue().providers
    for entry in providers:
        if entry.id == name:
            return canonical_names(entry.id)[0]
    for entry in providers:
        if entry.provider_match is not None and entry.provider_match.is_match(name):
            return canonical_names(entry.id)[0]
    return name


_TRAILING_DATE = re.compile(r"[-@](?:20\d\d-\d\d-\d\d|20\d\d\d\d\d\d)$")
_GEMINI_VERSION = re.compile(r"^(gemini-.+)-\d{3}$")


@lru_cache(maxsize=1)
def _catalogue() -> Any:
    from genai_prices import data_snapshot  # lazy: loading the catalogue costs ~0.2 s

    return data_snapshot.get_snapshot()


def _catalogue_id(provider: str, ref: str) -> str | None:
    from genai_prices.data_snapshot import find_provider_by_id

    snapshot = _catalogue()
    entry = find_provider_by_id(snapshot.providers, PROVIDER_CATALOGUE.get(provider, provider))
    if entry is None:
        return None
    model = entry.find_model(ref, all_providers=snapshot.providers)
    # Lower-cased like every model id yieldmeter stores (PriceRecord.model): some catalogue ids
    # are mixed case (Meta-Llama-3.1-405B-Instruct, Qwen/Qwen3-32B).
    return model.id.lower() if model is not None else None


@lru_cache(maxsize=65536)
def normalize_model(provider: str, model: str) -> str:
    """The catalogue id of ``model`` as called on ``provider``, in any spelling (see the rule above).

    Normalise ``response_model`` when the provider returned one (Azure's request model is a
    deployment name), else ``request_model``. Idempotent: normalising a catalogue id returns it.
    """
    provider = normalize_provider(provider)
    raw = model.strip().lower()
    if not raw:
        raise ValueError("model id is empty")
    if hit := _catalogue_id(provider, raw):
        return hit
    ref = raw.rsplit("/", 1)[-1] if "/" in raw else raw
    ref = MODEL_ALIASES.get(ref, ref)
    if hit := _catalogue_id(provider, ref):
        return hit
    if PROVIDER_CATALOGUE.get(provider, provider) == "aws":
        return ref
    stripped = _GEMINI_VERSION.sub(r"\1", _TRAILING_DATE.sub("", ref))
    if stripped != ref and (hit := _catalogue_id(provider, stripped)):
        return hit
    return stripped
