"""The event contracts, defined once in the producer SDK (yieldmeter_sdk.contracts) and
re-exported here so the application and its jobs import them under one name."""

from yieldmeter_sdk.contracts import *  # noqa: F403
