"""Shared terminal output and settings loading for the commands."""

from __future__ import annotations

from rich.console import Console

from yieldmeter.config import Settings, load_settings

console = Console(highlight=False, soft_wrap=True)  # no hard wraps: output stays greppable


def settings() -> Settings:
    """The settings, or a ConfigError (printed by main) naming the bad setting."""
    return load_settings()
