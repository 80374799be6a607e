"""Fixtures shared by every tier.

Tests never read the developer's own configuration: YIELDMETER_* variables are cleared and
every Settings is built explicitly. The session broker is a real Kafka: the one named by
YIELDMETER_TEST_KAFKA_BOOTSTRAP if set, else a local KRaft broker started from the jars
`make setup` fetched, on free ports, with its state in a temporary folder.
(Where a Docker engine exists a testcontainers backend could stand in here; none runs on
the machines this suite is developed on, so the local broker is the default.)
"""

from __future__ import annotations

import os
import socket
import uuid
from functools import cache
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from yieldmeter.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout: tests read its docs and fetched jars; the application reads nothing from it."""
DEV_LIB = Path(os.environ.get("YIELDMETER_LIB_DIR") or PROJECT_ROOT / ".yieldmeter" / "lib")
EXTERNAL_BOOTSTRAP = os.environ.get("YIELDMETER_TEST_KAFKA_BOOTSTRAP")

# No timed assertion: hypothesis's 200 ms deadline per example fails on a busy machine (two
# test workers on two cores), not on wrong code.
hypothesis_settings.register_profile("yieldmeter", deadline=None)
hypothesis_settings.load_profile("yieldmeter")

for _name in [n for n in os.environ if n.startswith("YIELDMETER_")]:
    if not _name.startswith("YIELDMETER_TEST_"):  # the tests' own variables (no setting starts so)
        del os.environ[_name]


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before pytest-xdist's own (first result wins)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs two pytest-xdist workers with --dist loadfile: a file's tests run on one
    worker, so its module fixtures are built once. Here the files on the e2e tests' simulated
    warehouse (the session fixture value_warehouse: a Flink run and a dbt build, a minute and a
    half) count as one file, so one worker builds it. (xdist_group marks would say this, but
    pytest-xdist 3.8.0 cannot apply them under pytest 9.2, which no longer reads Item._nodeid:
    pytest-dev/pytest-xdist#1386, open.) _split_scope is pytest-xdist's own (private) way to name
    a test's unit of work, as its LoadFileScheduling overrides it; tested with 3.8.0, pinned in
    requirements/app.lock."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    @cache
    def scope(path: str) -> str:
        return "value_warehouse" if "value_warehouse" in (config.rootpath / path).read_text() else path

    class LoadFileSharingTheWarehouse(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope(super()._split_scope(nodeid))

    return LoadFileSharingTheWarehouse(config, log)


FIGURES: list[str] = []
"""Lines the tests measure, printed in the run's summary whatever pytest's output capture (the
`figures` fixture of tests/e2e). Here, not in tests/e2e/conftest.py: pytest-xdist's controller
loads only this conftest, and the workers send it their figures."""


def pytest_sessionfinish(session) -> None:
    if hasattr(session.config, "workeroutput"):  # a pytest-xdist worker
        session.config.workeroutput["figures"] = FIGURES


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # pytest-xdist's controller: a worker has finished
    FIGURES.extend(getattr(node, "workeroutput", {}).get("figures", []))


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("end-to-end figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_settings(state_dir: Path, **overrides) -> Settings:
    """Settings for a test: its own state folder, the project's fetched jars, no .env file."""
    values = {"state_dir": state_dir, "lib_dir": DEV_LIB, "flink_parallelism": 1} | overrides
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory) -> Settings:
    """Settings pointing at a running real broker for the whole session."""
    if EXTERNAL_BOOTSTRAP:
        yield make_settings(tmp_path_factory.mktemp("state"), kafka_bootstrap=EXTERNAL_BOOTSTRAP)
        return
    from yieldmeter.kafka_local import LocalKafka

    settings = make_settings(
        tmp_path_factory.mktemp("kafka-state"), kafka_port=free_port(), kafka_controller_port=free_port()
    )
    broker = LocalKafka(settings)
    broker.start()
    yield settings
    broker.stop()


@pytest.fixture
def settings(kafka, tmp_path) -> Settings:
    """Per-test settings: the session broker, and this test's own state folder and warehouse."""
    return make_settings(tmp_path / "state", kafka_bootstrap=kafka.bootstrap_servers)


@pytest.fixture
def new_topics(kafka):
    """Create fresh topics for one test: new_topics(2, partitions=2) -> [names]. Deleted afterwards."""
    from yieldmeter.topics import admin_client, create_topics

    admin = admin_client(kafka)
    made: list[str] = []

    def factory(count: int = 1, partitions: int = 1, config: dict | None = None) -> list[str]:
        names = [f"test.{uuid.uuid4().hex[:10]}" for _ in range(count)]
        create_topics(admin, {n: {"partitions": partitions, "config": config or {}} for n in names})
        made.extend(names)
        return names

    yield factory
    if made:
        admin.delete_topics(made)


@pytest.fixture
def warehouse_url(tmp_path) -> str:
    """A fresh embedded warehouse folder for one test."""
    return f"chdb://{tmp_path / 'warehouse'}"
