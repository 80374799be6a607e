"""`yieldmeter up | status` as a user runs them: a subprocess with only its environment. (up, status and
down on a local broker: tests/e2e/test_installed.py, from the installed wheel.)"""

import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import DEV_LIB, free_port

pytestmark = pytest.mark.integration


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "yieldmeter", *args], capture_output=True, text=True,
                          env=base | env, timeout=180)


@pytest.fixture
def local_env(tmp_path):
    return {
        "YIELDMETER_STATE_DIR": str(tmp_path / "state"),
        "YIELDMETER_LIB_DIR": str(DEV_LIB),
        "YIELDMETER_KAFKA_PORT": str(free_port()),
        "YIELDMETER_KAFKA_CONTROLLER_PORT": str(free_port()),
    }


def test_port_taken_names_port_and_setting(local_env):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(local_env["YIELDMETER_KAFKA_PORT"])))
        squatter.listen()
        result = cli(local_env, "up")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"Port {local_env['YIELDMETER_KAFKA_PORT']}" in output and "YIELDMETER_KAFKA_PORT" in output
    assert "Traceback" not in output


def test_external_bootstrap_skips_local_broker(local_env, kafka):
    env = local_env | {"YIELDMETER_KAFKA_BOOTSTRAP": kafka.bootstrap_servers}
    result = cli(env, "up")
    assert result.returncode == 0, result.stderr
    assert "no local broker started" in result.stdout
    assert "kafka (external)" in cli(env, "status").stdout
