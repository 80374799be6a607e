"""dbt on the warehouse: the same project (dbt/) on the embedded engine or on a server.

    run_dbt(settings, ["build"])                      # what `yieldmeter transform` runs
    run_dbt(settings, ["build", "--select", "marts"])
    run_dbt(settings, ["docs", "generate"])           # what `yieldmeter docs` runs

Embedded (``chdb:///path``): chdb allows one process per data folder, so dbt runs inside this
process. dbt-clickhouse builds its clickhouse-connect HTTP client in
``ChHttpClient._create_client``; for the run, that method returns an in-process chdb client on
the warehouse folder instead (the ``embedded`` target of dbt/profiles.yml: its host is never
dialled). Everything else in dbt-clickhouse is unchanged, so the SQL is the server's SQL.

Server (``http(s)://user:password@host:port/db``): the ``server`` target, whose
CLICKHOUSE_* variables are set from the URL for the run. The password goes into the process
environment of this run only and is never printed.

dbt writes its artifacts and logs under ``<state>/dbt/`` (target/, logs/), so runs of different
state folders (tests, benchmarks) never share a manifest.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from yieldmeter.config import Settings
from yieldmeter.errors import YieldmeterError
from yieldmeter.share import share_path
from yieldmeter.warehouse import connect, embedded_path, redact

DBT_DIR = share_path("dbt")
# dbt's own commands: `yieldmeter transform <one of these> ...` runs it instead of `build`.
DBT_COMMANDS = frozenset({
    "build", "clean", "clone", "compile", "debug", "deps", "docs", "list", "ls", "parse", "retry",
    "run", "run-operation", "seed", "show", "snapshot", "source", "test",
})
# What `yieldmeter run` builds every --dbt-every seconds: the models (incremental) and their data
# tests, less the unit tests (they test SQL that does not change between cycles) and the tests
# that read every stored row again (tag full_history, dbt_project.yml): a refresh costs what is
# new. `yieldmeter transform` runs everything.
SCHEDULED_BUILD = ("build", "--exclude-resource-type", "unit_test", "--exclude", "tag:full_history")
# ... and once one has succeeded, the views too (staging, int_calls_priced):
# a view is its SQL alone, and the project does not change under a running process (it keeps the
# parsed manifest), so building one again re-creates the same view, a dbt node of work each build.
# Their tests still run ("empty" indirect selection: excluding a model would exclude its tests).
# The selector is a second value of SCHEDULED_BUILD's last option, --exclude.
SCHEDULED_BUILD_WITHOUT_VIEWS = (*SCHEDULED_BUILD, "config.materialized:view,resource_type:model",
                                 "--indirect-selection", "empty")
# How macros/delete_insert.sql's column check begins its error: an incremental model whose table
# no longer has the model's columns (yieldmeter upgraded, a model edited) is rebuilt from scratch.
COLUMNS_CHANGED = "The columns of incremental model "
# What decides the rows the models build: their SQL, the macros' and dbt_project.yml (its vars).
# A build records the project's version (project_version) in the ledger, int_incremental_builds.
PROJECT_FILES = ("models/**/*.sql", "macros/**/*.sql", "dbt_project.yml")
# The tables the models read; a warehouse without them has not been migrated.
SOURCE_TABLES = ("calls", "sessions", "outcomes", "prices", "org_discounts", "dead_letters", "calls_hourly")
# dbt's parsed project, kept by a process that builds again and again (`yieldmeter run`): even a
# partial parse reads and hashes every file of the project (0.7 s a build), and the project does
# not change under a running process. dbtRunner(manifest=...) is dbt's documented way to reuse one.
_MANIFESTS: dict[tuple[str, ...], Any] = {}


@lru_cache(maxsize=1)
def _metric_macros() -> Any:
    from jinja2 import Environment, StrictUndefined

    source = (DBT_DIR / "macros" / "metrics.sql").read_text(encoding="utf-8")
    return Environment(undefined=StrictUndefined).from_string(source).module


def metric_sql(name: str, *columns: str) -> str:
    """The SQL of one value metric exactly as the dbt marts define it (dbt/macros/metrics.sql),
    over ``columns`` (default: the marts' additive column names), for the report, the alerts and
    the demo to apply to the marts' sums: one definition per metric, one unpriced-call policy.

        metric_sql("cost_per_successful_outcome_usd")                  # over cost_usd, successful_outcomes, unpriced_calls
        metric_sql("cost_per_successful_outcome_usd", "cost_now", "wins_now", "unpriced_now")
    """
    macro = getattr(_metric_macros(), name, None)
    if macro is None:
        raise KeyError(f"no metric {name!r} in dbt/macros/metrics.sql")
    return " ".join(str(macro(*columns)).split())


class TransformError(YieldmeterError):
    """dbt could not run, or the warehouse is not ready for it; the message says what to do."""


@dataclass
class DbtRun:
    """What one dbt invocation did."""

    args: list[str]
    success: bool
    seconds: float
    target_path: Path
    results: list[Any] = field(default_factory=list)  # dbt NodeResults (build, run, test, seed, ...)
    full_rebuild: str = ""  # why a build rebuilt every model instead (ScheduledBuilds, transform)

    def counts(self) -> Counter:
        """Node results by status (success, pass, warn, error, fail, skipped)."""
        return Counter(str(getattr(r.status, "value", r.status)) for r in self.results)

    def failures(self) -> list[str]:
        return [
            f"{r.node.resource_type} {r.node.name}: {r.message}"
            for r in self.results
            if str(getattr(r.status, "value", r.status)) in ("error", "fail")
        ]


def dbt_dir(settings: Settings) -> Path:
    """Where dbt writes its artifacts (target/) and logs (logs/) for these settings."""
    return settings.state_path / "dbt"


def dbt_arguments(args: Sequence[str]) -> list[str]:
    """``yieldmeter transform`` arguments -> dbt arguments: a dbt command first, else ``build``."""
    args = list(args)
    if args and args[0] in DBT_COMMANDS:
        return args
    return ["build", *args]


def server_environment(url: str) -> dict[str, str]:
    """The CLICKHOUSE_* variables the ``server`` target of dbt/profiles.yml reads, from a URL."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    database = parts.path.strip("/") or "default"
    return {
        "DBT_TARGET": "server",
        "CLICKHOUSE_HOST": parts.hostname or "localhost",
        "CLICKHOUSE_PORT": str(parts.port or (8443 if secure else 8123)),
        "CLICKHOUSE_USER": unquote(parts.username) if parts.username else "default",
        "CLICKHOUSE_PASSWORD": unquote(parts.password) if parts.password else "",
        "CLICKHOUSE_DATABASE": database,
        "CLICKHOUSE_SECURE": "true" if secure else "false",
    }


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _in_process_clients(url: str) -> Iterator[None]:
    """dbt-clickhouse's clients become chdb clients on the warehouse folder, for this block."""
    from dbt.adapters.clickhouse.httpclient import ChHttpClient

    original = ChHttpClient._create_client

    def create_client(self: ChHttpClient, credentials: Any) -> Any:
        client = connect(url)  # raises WarehouseBusy if another process holds the folder
        for key, value in self._conn_settings.items():
            client.set_client_setting(key, value)
        return client

    ChHttpClient._create_client = create_client
    try:
        yield
    finally:
        ChHttpClient._create_client = original


def check_warehouse(url: str) -> None:
    """The warehouse answers and holds the source tables (else: run `yieldmeter migrate`)."""
    path = embedded_path(url)
    if path is not None and not path.exists():  # connect() would create the folder
        raise TransformError(f"No warehouse at {path}: run `yieldmeter migrate` first.")
    client = connect(url)
    try:
        present = {row[0] for row in client.query("SHOW TABLES").result_rows}
    finally:
        client.close()
    missing = [t for t in SOURCE_TABLES if t not in present]
    if missing:
        raise TransformError(
            f"The warehouse {redact(url)} has no table {', '.join(missing)}: "
            "run `yieldmeter migrate` first (then `yieldmeter ingest` or `yieldmeter run` to fill it)."
        )


def project_version(directory: Path | None = None) -> str:
    """A hash of the dbt project's PROJECT_FILES (default: DBT_DIR's): it changes with a model's
    logic, a macro's or a var's default, not with docs or tests (the .yml files beside the models;
    a changed column type is caught by the build itself, COLUMNS_CHANGED)."""
    directory = directory or DBT_DIR
    digest = hashlib.sha256()
    for path in sorted({p for pattern in PROJECT_FILES for p in directory.glob(pattern)}):
        content = path.read_bytes()
        digest.update(f"{path.relative_to(directory).as_posix()}\0{len(content)}\0".encode() + content)
    return digest.hexdigest()[:16]


def project_changed(url: str) -> str:
    """Why the warehouse's incremental models must be rebuilt from scratch before an incremental
    build ("" if not): its last finished build (the ledger, int_incremental_builds) ran another
    version of the dbt project (yieldmeter upgraded, a model edited; a ledger without the column:
    an earlier yieldmeter), so its rows were computed by other code, which an incremental build
    would keep beside rows of this one. A warehouse with no finished build yet needs nothing (its
    first build rebuilds every key); one not there at all neither (run_dbt's check_warehouse says
    so: connect() would create its folder)."""
    path = embedded_path(url)
    if path is not None and not path.exists():
        return ""
    client = connect(url)
    try:
        if not client.query("EXISTS TABLE int_incremental_builds").result_rows[0][0]:
            return ""
        columns = {row[0] for row in client.query("DESCRIBE TABLE int_incremental_builds").result_rows}
        recorded = client.query(
            "SELECT project_version FROM int_incremental_builds ORDER BY built_at DESC LIMIT 1"
        ).result_rows if "project_version" in columns else [("",)]
    finally:
        client.close()
    return "the dbt project changed since the last build" if recorded and recorded[0][0] != project_version() else ""


def run_dbt(settings: Settings, args: Sequence[str], keep_manifest: bool = False) -> DbtRun:
    """Run one dbt command (``args`` as on dbt's command line) on the settings' warehouse.
    ``keep_manifest``: parse the project once per process and reuse it (for repeated builds);
    ``["parse"]`` with it parses ahead of the first build."""
    from dbt.cli.main import dbtRunner

    url = settings.warehouse_url
    embedded = embedded_path(url) is not None
    args = list(args)
    if args[:1] not in (["deps"], ["clean"], ["parse"], ["ls"], ["list"]):
        check_warehouse(url)
    paths = dbt_dir(settings)
    environment = {
        "DBT_PROJECT_DIR": str(DBT_DIR),
        "DBT_PROFILES_DIR": str(DBT_DIR),
        "DBT_TARGET_PATH": str(paths / "target"),
        "DBT_LOG_PATH": str(paths / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "YIELDMETER_DBT_THREADS": str(settings.dbt_threads),  # profiles.yml reads it
        "YIELDMETER_DBT_PROJECT_VERSION": project_version(),  # the ledger records it
    }
    environment |= {"DBT_TARGET": "embedded", "CLICKHOUSE_DATABASE": "default"} if embedded else server_environment(url)
    start = time.monotonic()
    with _environment(environment), (_in_process_clients(url) if embedded else _nothing()):
        manifest = outcome = None
        if keep_manifest:
            variables = args[args.index("--vars"):args.index("--vars") + 2] if "--vars" in args else []
            key = (str(DBT_DIR), str(paths), environment["DBT_TARGET"], url, *variables)
            if key not in _MANIFESTS:
                parsed = dbtRunner().invoke(["parse", "--quiet", *variables])
                if parsed.success:
                    _MANIFESTS[key] = parsed.result
                if args[:1] == ["parse"]:  # the parse asked for is this one
                    outcome = parsed
            manifest = _MANIFESTS.get(key)
        if outcome is None:
            outcome = dbtRunner(manifest=manifest).invoke(args)
    seconds = time.monotonic() - start
    if outcome.exception is not None:
        raise TransformError(f"dbt {' '.join(args)} failed: {outcome.exception}") from outcome.exception
    results = list(getattr(outcome.result, "results", None) or [])
    return DbtRun(args, bool(outcome.success), seconds, paths / "target", results)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def transform(settings: Settings, args: Sequence[str] = (), keep_manifest: bool = False) -> DbtRun:
    """``dbt build`` (or the dbt command ``args`` starts with) on the warehouse; a build or run of
    a warehouse that another version of the project built (project_changed) with --full-refresh,
    so that no row of the earlier code stays."""
    args = dbt_arguments(args)
    builds = args[0] in ("build", "run") and "--full-refresh" not in args
    why = project_changed(settings.warehouse_url) if builds else ""
    run = run_dbt(settings, [*args, "--full-refresh"] if why else args, keep_manifest)
    run.full_rebuild = why
    return run


class ScheduledBuilds:
    """The builds of one long-lived process (`yieldmeter run`), one call each: the project parsed
    once (keep_manifest), SCHEDULED_BUILD, and after a build that succeeded
    SCHEDULED_BUILD_WITHOUT_VIEWS until one fails (a view dropped behind its back is built again).
    A warehouse whose last finished build ran another version of the project (project_changed: a
    yieldmeter upgraded, a model edited) is built with --full-refresh instead: every model, so
    none keeps rows of the earlier code beside the new ones. So is one whose build fails because
    an incremental model's columns changed (the rebuild its error asks for), at once: otherwise
    every build would fail until someone stopped the process to run it by hand.
    ``args``: more dbt arguments for every build (e.g. --vars)."""

    def __init__(self, settings: Settings, args: Sequence[str] = ()) -> None:
        self.settings, self.args, self.views_built = settings, list(args), False

    def __call__(self) -> DbtRun:
        why, failed_s = project_changed(self.settings.warehouse_url), 0.0
        if not why:
            build = SCHEDULED_BUILD_WITHOUT_VIEWS if self.views_built else SCHEDULED_BUILD
            run = run_dbt(self.settings, [*build, *self.args], keep_manifest=True)
            changed = [f.split(COLUMNS_CHANGED, 1)[1].split(" ", 1)[0] for f in run.failures() if COLUMNS_CHANGED in f]
            if not changed:
                self.views_built = run.success
                return run
            why, failed_s = f"the columns of {', '.join(sorted(changed))} changed", run.seconds
        run = run_dbt(self.settings, [*SCHEDULED_BUILD, "--full-refresh", *self.args], keep_manifest=True)
        run.seconds += failed_s
        run.full_rebuild = why
        self.views_built = run.success
        return run


def generate_docs(settings: Settings, args: Sequence[str] = ()) -> DbtRun:
    """``dbt docs generate``: the site (index.html, manifest.json, catalog.json) in target/."""
    return run_dbt(settings, ["docs", "generate", *args])


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


def docs_server(directory: Path, port: int = 8580, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server for a generated docs site (call serve_forever(); port 0 picks a free one)."""
    if not (directory / "index.html").exists():
        raise TransformError(f"No docs site in {directory}: run `yieldmeter docs` first.")
    try:
        return ThreadingHTTPServer((host, port), partial(_QuietHandler, directory=str(directory)))
    except OSError as error:
        raise TransformError(f"Cannot serve the docs on {host}:{port} ({error.strerror}); pick another --port.") from None
