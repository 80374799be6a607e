import subprocess
import sys

import pytest

from yieldmeter.config import ConfigError, load_settings

pytestmark = pytest.mark.unit


def test_defaults_are_local(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(_env_file=None)
    assert settings.uses_local_kafka
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.warehouse_url == f"chdb://{tmp_path / '.yieldmeter' / 'warehouse'}"
    assert settings.lib_path == tmp_path / ".yieldmeter" / "lib"
    assert settings.topics["events"] == "usage.events"
    assert settings.slack_webhook_url is None


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("YIELDMETER_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("YIELDMETER_CLICKHOUSE_URL", "https://ym:secret@ch.example:8443/yieldmeter")
    monkeypatch.setenv("YIELDMETER_TOPIC_EVENTS", "acme.usage.events")
    settings = load_settings(_env_file=None)
    assert not settings.uses_local_kafka
    assert settings.bootstrap_servers == "k1:9092,k2:9092"
    assert settings.topics["events"] == "acme.usage.events"
    assert settings.warehouse_url.startswith("https://")


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("YIELDMETER_KAFKA_PORT", "80", "greater than or equal to 1024"),
        ("YIELDMETER_KAFKA_PORT", "ninety", "valid integer"),
        ("YIELDMETER_KAFKA_BOOTSTRAP", "localhost", "is not host:port"),
        ("YIELDMETER_CLICKHOUSE_URL", "postgres://db", "chdb:///path"),
        ("YIELDMETER_CLICKHOUSE_URL", "chdb://", "names a folder"),
        ("YIELDMETER_TOPIC_DLQ", "bad topic!", "Kafka topic name"),
        ("YIELDMETER_FLINK_PARALLELISM", "0", "greater than or equal to 1"),
    ],
)
def test_bad_value_names_the_setting(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    message = str(raised.value)
    assert variable in message and expected in message


def test_cli_reports_bad_config_without_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "YIELDMETER_KAFKA_PORT": "80", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "yieldmeter", "status"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "YIELDMETER_KAFKA_PORT=80" in output and "1024" in output
    assert "Traceback" not in output


def test_readme_documents_every_setting():
    from tests.conftest import PROJECT_ROOT
    from yieldmeter.config import Settings

    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`YIELDMETER_{name.upper()}`" not in readme]
    assert not missing, f"README's configuration table lacks: {missing}"


def test_job_arguments_repeat_list_options(tmp_path):
    from tests.conftest import make_settings
    from yieldmeter.flink import job_arguments

    (tmp_path / "lib" / "flink").mkdir(parents=True)
    (tmp_path / "lib" / "flink" / "connector.jar").touch()
    argv = job_arguments("pipeline", make_settings(tmp_path, lib_dir=tmp_path / "lib"), flink_conf=["a=1", "b=2"],
                         bounded=True, fresh=False, events_topic="t")  # fmt: skip
    # the state backend from the settings first, then the caller's (the last of a key wins in the job)
    assert argv[argv.index("--flink-conf") :][:6] == [
        "--flink-conf", "state.backend.type=hashmap", "--flink-conf", "a=1", "--flink-conf", "b=2"]
    assert "--bounded" in argv and "--fresh" not in argv and argv[argv.index("--events-topic") + 1] == "t"


def test_the_demo_keeps_the_fetched_jars_and_its_own_state(monkeypatch, tmp_path):
    """`make demo` on a fresh clone: jars in <state>/lib, the demo's state in <state>/demo."""
    from yieldmeter.cli.demo import demo_settings

    monkeypatch.chdir(tmp_path)
    base = load_settings(_env_file=None)
    demo = demo_settings(base)
    assert demo.lib_path == tmp_path / ".yieldmeter" / "lib" == base.lib_path
    assert demo.state_path == tmp_path / ".yieldmeter" / "demo"
    assert demo.warehouse_url == f"chdb://{tmp_path / '.yieldmeter' / 'demo' / 'warehouse'}"


def test_ctrl_c_during_a_run_sets_stop_and_a_second_one_interrupts():
    """yieldmeter run's signal handling: a Ctrl-C cannot be swallowed by a library (dbt catches
    KeyboardInterrupt), the second one interrupts, and the handlers are restored afterwards."""
    import os
    import signal
    import threading
    import time

    from yieldmeter.runner import _stop_on_signals

    stop, before = threading.Event(), signal.getsignal(signal.SIGINT)
    with _stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises here
    assert signal.getsignal(signal.SIGINT) is before
