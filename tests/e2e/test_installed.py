"""yieldmeter as users install it, and the producer SDK on every Python it supports.

One pipeline run serves both (a run costs a Flink start-up and a dbt build):

- the built wheels of yieldmeter and yieldmeter-sdk in a fresh virtual environment, driven
  through its own `yieldmeter` command from an empty folder outside the checkout: up, migrate,
  simulate, run --until-caught-up, transform (and up, status, down as tests/integration's
  CLI tests used to run them from the checkout). The simulated calls land in the warehouse and
  its marts, priced as the simulator's ground truth says, and nothing is written into the
  installed package;
- the yieldmeter-sdk wheel alone, in a fresh environment per Python (3.9, its floor, to 3.13),
  producing to that broker before the run: the events on the topic validate under the
  application's contracts, and each call is priced as genai-prices prices it.

To keep it cheap the application's environment reuses the pinned dependencies of the
checkout's .venv (a .pth file puts that site-packages on its path, the two wheels go in with
--no-deps), and finds the Flink environment and the fetched jars through its settings
(YIELDMETER_FLINK_PYTHON, YIELDMETER_LIB_DIR), as an installation elsewhere would. The SDK
environments install pydantic and confluent-kafka from PyPI (through pip's cache), in the
background while the broker starts; they live as long as the module's fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from tests.conftest import DEV_LIB, PROJECT_ROOT, free_port
from tests.kafka_helpers import consume_all
from yieldmeter.contracts import OutcomeEvent, UsageEvent, parse_outcome, parse_usage
from yieldmeter.normalize import normalize_model

pytestmark = pytest.mark.e2e

PYTHONS = ("3.9", "3.11", "3.12", "3.13")
SIMULATED_EVENTS = 1000
PRODUCER = Path(__file__).with_name("sdk_producer.py")
FLINK_PYTHON = PROJECT_ROOT / ".venv-flink" / "bin" / "python"


def interpreter(minor: str) -> str | None:
    """A working python<minor>: pyenv's newest <minor>.x (as `PYENV_VERSION=3.12.1 python3.12`
    selects it), else one on the PATH."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted(root.glob(f"versions/{minor}.*/bin/python{minor}"), key=lambda p: [int(n) for n in p.parts[-3].split(".") if n.isdigit()])
    for exe in [*map(str, reversed(found)), shutil.which(f"python{minor}")]:
        if exe and subprocess.run([exe, "-c", "import venv"], capture_output=True).returncode == 0:
            return exe
    return None


def site_files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}


@dataclass
class Installed:
    venv: Path
    folder: Path  # the empty working folder outside the checkout
    env: dict[str, str]
    package_before: set[Path]  # the installed yieldmeter package's files, before anything ran
    manifest: dict = field(default_factory=dict)
    sdk_sent: dict[str, list[str]] = field(default_factory=dict)  # Python minor -> the events its SDK sent, as JSON
    footprint: dict[str, str] = field(default_factory=dict)  # Python minor -> the SDK environment's size and packages
    warehouse: dict = field(default_factory=dict)  # counts after the run and transform
    sdk_calls: dict[str, dict] = field(default_factory=dict)  # event_id -> its row in calls
    on_topic: dict[str, UsageEvent | OutcomeEvent] = field(default_factory=dict)  # the SDK's events, read back
    outputs: dict[str, str] = field(default_factory=dict)  # what up, status and down printed
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each step

    def cli(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        start = time.monotonic()
        done = subprocess.run([str(self.venv / "bin" / "yieldmeter"), *args], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0 or not check, f"yieldmeter {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        self.seconds[f"yieldmeter {args[0]}"] = self.seconds.get(f"yieldmeter {args[0]}", 0) + time.monotonic() - start
        return done

    def sql(self, query: str) -> list[dict]:
        out = self.cli("sql", "--format", "json", query).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def run(command: list[str], **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def purelib(python: Path) -> Path:
    return Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())


def start_sdk_environments(root: Path, wheel: Path) -> dict[str, tuple[Path, subprocess.Popen]]:
    """Start making a fresh environment per available Python with only the SDK wheel and its
    dependencies, in the background (the app's wheel is built and the broker starts meanwhile)."""
    started = {}
    for minor in PYTHONS:
        exe = interpreter(minor)
        if exe is not None:
            venv = root / f"sdk-{minor}"
            pip = f"{venv}/bin/python -m pip install -q --no-compile --disable-pip-version-check {wheel}"
            started[minor] = (venv, subprocess.Popen(f"{exe} -m venv {venv} && {pip}", shell=True, text=True,
                                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    return started


def footprint(venv: Path) -> str:
    """Installed size of the SDK and its dependencies (pip and setuptools left out), and the packages."""
    site = purelib(venv / "bin" / "python")
    tooling = ("pip", "setuptools", "_distutils_hack", "distutils-precedence.pth", "pkg_resources")
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.relative_to(site).parts[0].startswith(tooling))
    packages = sorted(p.name.removesuffix(".dist-info") for p in site.glob("*.dist-info") if not p.name.startswith(tooling))
    return f"{size / 2**20:.1f} MiB installed: {', '.join(packages)}"


def sdk_events_on_topics(installed: Installed) -> dict[str, UsageEvent | OutcomeEvent]:
    """The SDK's calls and outcomes as they are on usage.events and usage.outcomes, validated by
    the application's contracts; by event or outcome id."""
    bootstrap = f"127.0.0.1:{installed.env['YIELDMETER_KAFKA_PORT']}"
    totals, sdks = installed.manifest["totals"], len(installed.sdk_sent)
    calls = consume_all(bootstrap, "usage.events", totals["usage_lines"] + 3 * sdks)
    outcomes = consume_all(bootstrap, "usage.outcomes", totals["outcomes"] + sdks)
    return {e.event_id: e for e in (parse_usage(m.value()) for m in calls if b'"sdk-py' in m.value())} | {
        o.outcome_id: o for o in (parse_outcome(m.value()) for m in outcomes if b'"sdk-py' in m.value())}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    if not FLINK_PYTHON.exists():
        pytest.fail(f"No Flink environment at {FLINK_PYTHON}: run `make setup`")
    root = tmp_path_factory.mktemp("installed")
    dist, started = root / "dist", time.monotonic()
    wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w", str(dist)]
    for project in (PROJECT_ROOT, PROJECT_ROOT / "sdk"):  # setuptools would pack what an earlier build left there
        shutil.rmtree(project / "build", ignore_errors=True)
    run([*wheel, str(PROJECT_ROOT / "sdk")])
    (sdk_wheel,) = dist.glob("yieldmeter_sdk-*.whl")
    sdk_making = start_sdk_environments(root, sdk_wheel)
    run([*wheel, str(PROJECT_ROOT)])
    (app_wheel,) = dist.glob("yieldmeter-*.whl")
    built = time.monotonic()

    venv = root / "app"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    site = purelib(venv / "bin" / "python")
    (site / "checkout-venv-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
         "--disable-pip-version-check", "--no-deps", str(app_wheel), str(sdk_wheel)])

    folder = tmp_path_factory.mktemp("empty-folder")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YIELDMETER_", "PYTHON", "VIRTUAL_ENV"))} | {
        "YIELDMETER_KAFKA_PORT": str(port), "YIELDMETER_KAFKA_CONTROLLER_PORT": str(free_port()),
        "YIELDMETER_LIB_DIR": str(DEV_LIB), "YIELDMETER_FLINK_PYTHON": str(FLINK_PYTHON),
        "YIELDMETER_FLINK_PARALLELISM": "1",
    }
    app = Installed(venv, folder, env, site_files(site / "yieldmeter"))
    app.seconds |= {"build both wheels": built - started, "app environment": time.monotonic() - built}
    app.outputs["up"] = app.cli("up", timeout=120).stdout
    try:
        app.outputs["up again"] = app.cli("up").stdout
        app.outputs["status"] = app.cli("status").stdout
        app.cli("migrate")
        app.cli("simulate", "--events", str(SIMULATED_EVENTS), "--days", "2", "--to-kafka", "--manifest", "manifest.json")
        app.manifest = json.loads((folder / "manifest.json").read_text())

        waited = time.monotonic()
        for minor, (sdk, process) in sdk_making.items():
            output, _ = process.communicate(timeout=600)
            assert process.returncode == 0, f"installing the SDK on Python {minor} failed:\n{output}"
            app.footprint[minor] = footprint(sdk)
        produced = time.monotonic()
        app.seconds["SDK environments (waited for)"] = produced - waited
        producers = {minor: subprocess.Popen([str(sdk / "bin" / "python"), str(PRODUCER), f"127.0.0.1:{port}",
                                              f"sdk-py{minor}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for minor, (sdk, _) in sdk_making.items()}
        for minor, process in producers.items():
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, f"the SDK on Python {minor} failed:\n{out}\n{err}"
            app.sdk_sent[minor] = out.splitlines()
        app.seconds["SDK producers (in parallel)"] = time.monotonic() - produced

        app.cli("run", "--until-caught-up", "--no-alerts", "--dbt-every", "0", timeout=900)
        app.cli("transform", timeout=900)
        (app.warehouse,) = app.sql(
            "SELECT (SELECT count() FROM calls WHERE event_id NOT LIKE 'sdk-%') AS calls, "
            "(SELECT countIf(price_id != '') FROM calls WHERE event_id NOT LIKE 'sdk-%') AS priced, "
            "(SELECT count() FROM fct_calls) AS mart_calls")
        app.sdk_calls = {r["event_id"]: r for r in app.sql(
            "SELECT event_id, price_id, toString(cost_usd) AS cost_usd FROM calls WHERE event_id LIKE 'sdk-%'")}
        app.on_topic = sdk_events_on_topics(app)
    finally:
        for _, process in sdk_making.values():
            process.kill()  # when the setup failed before waiting for them; a no-op otherwise
        app.outputs["down"] = app.cli("down", timeout=120, check=False).stdout
    app.outputs["status after down"] = app.cli("status").stdout
    app.outputs["down again"] = app.cli("down").stdout
    return app


def test_the_installed_app_runs_from_an_empty_folder(installed, figures):
    where = run([str(installed.venv / "bin" / "python"), "-c", "import sysconfig, yieldmeter, yieldmeter_sdk; "
                 "print(sysconfig.get_paths()['purelib'], yieldmeter.__file__, yieldmeter_sdk.__file__)"],
                cwd=installed.folder).split()
    site = Path(where[0])
    assert Path(where[1]).parent == site / "yieldmeter" and Path(where[2]).parent == site / "yieldmeter_sdk"

    out = installed.outputs
    assert "Kafka is up" in out["up"] and "Created topics: usage.events" in out["up"]
    assert "already up" in out["up again"] and "up (pid" in out["status"]

    totals = installed.manifest["totals"]
    priced = sum(m["usage_events"] for m in installed.manifest["models"] if m["priced_by_genai_prices"])
    counts = {k: int(v) for k, v in installed.warehouse.items()}
    sdk_calls = sum(1 for lines in installed.sdk_sent.values() for line in lines if '"event_id"' in line)
    assert counts == {"calls": totals["valid_usage_events"], "priced": priced,
                      "mart_calls": totals["valid_usage_events"] + sdk_calls}
    # Writable state went to the working folder's state folder, nothing into the package.
    state = installed.folder / ".yieldmeter"
    assert (state / "dbt" / "target" / "manifest.json").exists() and (state / "warehouse").is_dir()
    assert site_files(site / "yieldmeter") == installed.package_before
    figures.extend(f"yieldmeter-sdk on Python {minor}: {text}" for minor, text in installed.footprint.items())
    figures.extend(f"installed app, {step}: {seconds:.1f} s" for step, seconds in installed.seconds.items())


def test_down_stops_what_up_started(installed):
    out = installed.outputs
    assert "Kafka stopped" in out["down"] and "down" in out["status after down"] and "not running" in out["down again"]
    assert not (installed.folder / ".yieldmeter" / "kafka" / "broker.pid").exists()


@pytest.fixture(params=PYTHONS)
def sdk_sent(request, installed) -> list[str]:
    if request.param not in installed.sdk_sent:
        pytest.skip(f"No Python {request.param} interpreter on this machine (pyenv or the PATH)")
    return installed.sdk_sent[request.param]


def test_sdk_events_are_valid_on_the_topic(sdk_sent, installed):
    sent = [json.loads(line) for line in sdk_sent]
    calls = {e["event_id"]: UsageEvent.model_validate(e) for e in sent if "event_id" in e}
    outcomes = {e["outcome_id"]: OutcomeEvent.model_validate(e) for e in sent if "outcome_id" in e}
    assert len(calls) == 3 and len(outcomes) == 1
    assert {i: installed.on_topic.get(i) for i in calls | outcomes} == calls | outcomes


def test_sdk_calls_are_priced_as_genai_prices_prices_them(sdk_sent, installed):
    calls = [UsageEvent.model_validate(json.loads(line)) for line in sdk_sent if '"event_id"' in line]
    for call in calls:
        model = normalize_model(call.provider, call.response_model)
        usage = Usage(input_tokens=call.input_tokens, cache_read_tokens=call.cache_read_tokens,
                      cache_write_tokens=call.cache_write_tokens, output_tokens=call.output_tokens,
                      output_reasoning_tokens=call.reasoning_tokens)
        oracle = calc_price(usage, model_ref=model, provider_id=call.provider,
                            genai_request_timestamp=call.occurred_at).total_price
        row = installed.sdk_calls[call.event_id]
        assert row["price_id"], f"{call.event_id} is unpriced"
        assert Decimal(row["cost_usd"]) == oracle, call.event_id
