"""The one base class for errors a user can fix: the CLI prints their message, no traceback."""


class YieldmeterError(Exception):
    """An error whose message names what went wrong and what to do about it."""
