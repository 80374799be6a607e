"""Shared terminal output and settings loading for the commands."""

from __future__ import annotations

import sys

from rich.console import Console

from yieldmeter.config import Settings, load_settings

# No hard wraps, and wide tables when piped or logged: output stays greppable.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def settings() -> Settings:
    """The settings, or a ConfigError (printed by main) naming the bad setting."""
    return load_settings()
