"""yieldmeter: value against volume for LLM token spend."""

__version__ = "0.1.0"
