"""A single-node Apache Kafka broker (KRaft) run from the jars `make setup` fetched.

Data, logs and the pid file live in <state>/kafka. `stop` only ever signals the process
recorded in the pid file, and only if it still is our broker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from yieldmeter.config import ENV_PREFIX, Settings
from yieldmeter.errors import YieldmeterError
from yieldmeter.share import share_path

MAIN_CLASS = "kafka.Kafka"
INFRA = share_path("infra", "kafka")


class KafkaError(YieldmeterError):
    """The local broker cannot be started or stopped; the message says what to do."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    home: Path


class LocalKafka:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = settings.state_path / "kafka"
        self.data_dir = self.home / "data"
        self.logs_dir = self.home / "logs"
        self.pid_file = self.home / "broker.pid"
        self.jars = settings.lib_path / "kafka"

    # --- status ------------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The pid of our broker if it is alive, else None (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            return None
        # The pid may have been reused by another program: only claim it if it runs our config.
        ours = MAIN_CLASS.encode() in cmdline and str(self.home / "server.properties").encode() in cmdline
        return pid if ours else None

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(pid is not None, pid, self.settings.bootstrap_servers, self.home)

    # --- start -------------------------------------------------------------------------------

    def start(self, timeout_s: float = 90.0) -> BrokerStatus:
        """Start the broker and wait until it answers. Raises KafkaError with the fix."""
        if not self.settings.uses_local_kafka:
            raise KafkaError(
                f"{ENV_PREFIX}KAFKA_BOOTSTRAP={self.settings.kafka_bootstrap} points at other brokers; "
                "no local broker is started. Unset it to use the local one."
            )
        if (pid := self.pid()) is not None:
            return BrokerStatus(True, pid, self.settings.bootstrap_servers, self.home)
        if not any(self.jars.glob("kafka_*.jar")):
            raise KafkaError(f"No Kafka jars in {self.jars}. Run `make setup` to fetch them.")
        for port, setting in (
            (self.settings.kafka_port, "KAFKA_PORT"),
            (self.settings.kafka_controller_port, "KAFKA_CONTROLLER_PORT"),
        ):
            if not port_is_free(port):
                raise KafkaError(
                    f"Port {port} on 127.0.0.1 is already taken by another program. "
                    f"Set {ENV_PREFIX}{setting} to a free port (or stop what uses {port})."
                )
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._java("kafka.tools.StorageTool", "format", "-t", str(uuid.uuid4()), "-c", str(self.config_file),
                       wait=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.logs_dir / "stdout.log", "ab") as out:
            process = self._java(MAIN_CLASS, str(self.config_file), stdout=out)
        self.pid_file.write_text(f"{process.pid}\n")
        self._wait_until_ready(process, timeout_s)
        return self.status()

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        template = (INFRA / "server.properties").read_text()
        self.config_file.write_text(
            template.format(
                port=self.settings.kafka_port,
                controller_port=self.settings.kafka_controller_port,
                data_dir=self.data_dir,
            )
        )

    def _java(self, main: str, *args: str, wait: bool = False, stdout=None) -> subprocess.Popen:
        command = [
            "java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={INFRA / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp", f"{self.jars}/*", main, *args,
        ]  # fmt: skip
        if wait:
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise KafkaError(f"{main} failed: {result.stderr.strip() or result.stdout.strip()}")
            return None  # type: ignore[return-value]
        # A new session: Ctrl-C in the terminal does not reach the broker; `down` stops it.
        return subprocess.Popen(command, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_until_ready(self, process: subprocess.Popen, timeout_s: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.settings.bootstrap_servers, "log_level": 0})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise KafkaError(f"The broker exited with code {process.returncode}.\n{self.log_tail()}")
            try:
                metadata = admin.list_topics(timeout=1)
                if metadata.brokers:
                    return
            except Exception:  # not answering yet
                pass
            time.sleep(0.3)
        self.stop()
        raise KafkaError(f"The broker did not answer within {timeout_s:.0f}s.\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        for name in ("server.log", "stdout.log"):
            path = self.logs_dir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                return f"Last lines of {path}:\n" + "\n".join(tail)
        return f"No log in {self.logs_dir}."

    # --- stop --------------------------------------------------------------------------------

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop our broker (SIGTERM, then SIGKILL). Returns False when nothing of ours ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): it has exited, its parent just has not reaped it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
