"""Integrations with LLM gateways: :mod:`yieldmeter.integrations.litellm` (SDK and proxy)."""
