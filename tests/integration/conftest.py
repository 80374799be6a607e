"""Fixtures shared by the integration tests (the session's broker and settings are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from yieldmeter.warehouse import migrate, open_warehouse


@pytest.fixture
def client(warehouse_url):
    """A fresh embedded warehouse with every migration applied, open for one test."""
    with open_warehouse(warehouse_url) as client:
        migrate(client)
        yield client
