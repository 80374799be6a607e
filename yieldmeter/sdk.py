"""The producer SDK (the yieldmeter-sdk distribution, package yieldmeter_sdk), importable from
the application as ``yieldmeter.sdk`` too. See yieldmeter_sdk.producer."""

from yieldmeter_sdk.producer import *  # noqa: F403
