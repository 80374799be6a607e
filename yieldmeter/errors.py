"""The one base class for errors a user can fix (defined in the producer SDK, whose errors are
yieldmeter errors too): the CLI prints their message, no traceback."""

from yieldmeter_sdk.errors import YieldmeterError

__all__ = ["YieldmeterError"]
