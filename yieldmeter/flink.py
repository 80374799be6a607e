"""Run a PyFlink job file from jobs/ in the Flink environment, as a subprocess.

The job gets its whole configuration on the command line (bootstrap servers, topics,
parallelism, checkpoint folder, connector jars): nothing is read from the app's settings
inside the job, so the same file runs on the local mini-cluster and on a Flink cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from yieldmeter.config import ENV_PREFIX, Settings
from yieldmeter.errors import YieldmeterError
from yieldmeter.share import share_path

JOBS_DIR = share_path("jobs")


class FlinkError(YieldmeterError):
    """A job could not start or failed; the message carries the end of its log."""


@dataclass
class FlinkJob:
    name: str
    process: subprocess.Popen
    log: Path
    command: list[str] = field(repr=False)

    def wait(self, timeout_s: float | None = None) -> None:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise FlinkError(f"Job {self.name} did not finish within {timeout_s:.0f}s.\n{self.log_tail()}") from None
        if code != 0:
            raise FlinkError(f"Job {self.name} failed with exit code {code}.\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30) -> None:
        """Stop the job as a crash would: SIGKILL to its process group (Python driver and the
        mini-cluster JVM), then wait until every process of the group is gone.

        Not SIGTERM: the JVM's shutdown then closes the Kafka sinks' producers, and closing a
        producer aborts its open transaction, including the one a completed checkpoint already
        holds for its committer; the restarted job takes that transaction as committed and its
        records are lost. Killed, the transaction stays open and the restarted job commits it
        from the checkpoint (tests/e2e/test_faults.py: Ctrl-C, then run again).
        """
        kill_process_group(self.process.pid, timeout_s, child=self.process)  # start_new_session: it leads one

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        # Java stack traces are long; the useful line is usually the last "Caused by".
        return f"Last lines of {self.log}:\n" + "\n".join(text[-lines:])


def kill_process_group(group: int, timeout_s: float = 30, child: subprocess.Popen | None = None) -> None:
    """SIGKILL process group ``group`` and wait until every process of it is gone (at most
    ``timeout_s``). ``child``: our own process leading the group, reaped here, or it would stay
    in the group as a zombie. Processes of the group that were not our children are reaped by
    init once killed."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if child is not None:
        child.wait()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def connector_jars(settings: Settings) -> list[Path]:
    jars = sorted((settings.lib_path / "flink").glob("*.jar"))
    if not jars:
        raise FlinkError(f"No Flink connector jars in {settings.lib_path / 'flink'}. Run `make setup`.")
    return jars


def job_arguments(job: str, settings: Settings, **job_args: str | int | bool | list) -> list[str]:
    """The command line a job file receives: shared options from the settings, then its own."""
    state = settings.state_path / "flink"
    args = {
        "bootstrap": settings.bootstrap_servers,
        "group-id": f"yieldmeter-{job}",
        "parallelism": settings.flink_parallelism,
        "checkpoint-interval": settings.flink_checkpoint_interval,
        "checkpoint-dir": (state / "checkpoints" / job).as_uri(),
        "jars": ";".join(jar.as_uri() for jar in connector_jars(settings)),
    } | {key.replace("_", "-"): value for key, value in job_args.items()}
    # The state backend from the settings, before the caller's own --flink-conf (the last one wins).
    backend = [f"state.backend.type={settings.flink_state_backend}"]
    if settings.flink_state_backend == "rocksdb":
        backend.append("execution.checkpointing.incremental=true")  # a checkpoint writes what changed
    args["flink-conf"] = backend + list(args.get("flink-conf") or [])
    argv = []
    for key, value in args.items():
        if value is True:
            argv.append(f"--{key}")
        elif isinstance(value, (list, tuple)):  # a repeatable option, e.g. flink_conf=[...]
            for item in value:
                argv += [f"--{key}", str(item)]
        elif value is not False and value is not None:
            argv += [f"--{key}", str(value)]
    return argv


def start_job(job: str, settings: Settings, **job_args: str | int | bool) -> FlinkJob:
    """Start jobs/<job>.py on the local mini-cluster; returns at once (see FlinkJob.wait)."""
    script = JOBS_DIR / f"{job}.py"
    if not script.exists():
        known = ", ".join(sorted(p.stem for p in JOBS_DIR.glob("*.py") if p.stem != "common"))
        raise FlinkError(f"No job named {job!r}; jobs: {known}")
    python = settings.flink_python_path
    if not python.exists():
        raise FlinkError(f"No Flink environment at {python}. Run `make setup`, or set {ENV_PREFIX}FLINK_PYTHON.")
    logs = settings.state_path / "flink" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [str(python), str(script), *job_arguments(job, settings, **job_args)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"FLINK_LOG_DIR": str(logs)}
    if settings.flink_max_heap:  # PyFlink starts the local JVM with JVM_ARGS
        env["JVM_ARGS"] = f"{env.get('JVM_ARGS', '')} -Xmx{settings.flink_max_heap}".strip()
    log = logs / f"{job}.out"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return FlinkJob(job, process, log, command)
