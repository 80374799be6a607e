"""The one way into ClickHouse: a clickhouse-connect client from a URL, and the migrations.

``chdb:///path`` runs the real ClickHouse engine in this process (one process per folder);
``http(s)://user:password@host:port/db`` talks to a server. Nothing else branches on the mode.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from yieldmeter.config import ENV_PREFIX
from yieldmeter.errors import YieldmeterError
from yieldmeter.share import share_path

MIGRATIONS_DIR = share_path("infra", "clickhouse", "migrations")
MIGRATIONS_TABLE = "schema_migrations"


class WarehouseError(YieldmeterError):
    """The warehouse cannot be opened or migrated; the message says what to do."""


class WarehouseBusy(WarehouseError):
    def __init__(self, path: Path, pid: int, command: str):
        self.path, self.pid, self.command = path, pid, command
        super().__init__(
            f"The embedded warehouse {path} is in use by process {pid} ({command}). "
            "The embedded engine allows one process per folder: stop that process, or run this "
            f"command through it, or set {ENV_PREFIX}CLICKHOUSE_URL to a ClickHouse server "
            "(or to another chdb:/// folder)."
        )


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class LockHolder:
    pid: int
    command: str


def lock_holder(path: Path) -> LockHolder | None:
    """Which other process holds the embedded engine's folder, if any.

    ClickHouse keeps an exclusive flock on <path>/status and writes its PID into it.
    """
    status = path / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            pass
        match = re.search(rb"PID:\s*(\d+)", os.pread(fd, 4096, 0))
    finally:
        os.close(fd)
    pid = int(match.group(1)) if match else -1
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (FileNotFoundError, PermissionError):
        command = "unknown command"
    return LockHolder(pid, command or "unknown command")


# The embedded engine's server settings. chdb runs merges and mutations on 2 threads, where a
# ClickHouse server has 16: a lightweight DELETE (each incremental dbt model issues one) then waits
# for a free thread behind the merges of other tables, up to a second each on 10M calls.
ENGINE_OPTIONS = {"background_pool_size": 16}


def embedded_path(url: str) -> Path | None:
    """The folder of an embedded (chdb) warehouse URL; None for a server URL."""
    parts = urlsplit(url)
    return Path(parts.path) if parts.scheme == "chdb" else None


def connect(url: str) -> Client:
    """A clickhouse-connect client for a chdb:/// or http(s):// URL."""
    path = embedded_path(url)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        holder = lock_holder(path)
        if holder is not None and holder.pid != os.getpid():
            raise WarehouseBusy(path, holder.pid, holder.command)
        return clickhouse_connect.get_client(dsn=f"chdb://{path}", chdb_options=ENGINE_OPTIONS)
    try:
        return clickhouse_connect.get_client(dsn=url)
    except Exception as error:
        raise WarehouseError(f"Cannot reach ClickHouse at {redact(url)}: {error}") from None


@contextmanager
def open_warehouse(url: str) -> Iterator[Client]:
    client = connect(url)
    try:
        yield client
    finally:
        client.close()


# --- migrations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.encode()).hexdigest()[:16]

    @staticmethod
    def statements(sql: str) -> list[str]:
        """Split on ';' at a line end (the HTTP interface runs one statement per request)."""
        body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in re.split(r";\s*$", body, flags=re.M) if s.strip()]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """NNNN_name.up.sql (+ optional NNNN_name.down.sql), in version order."""
    migrations = []
    for up in sorted(directory.glob("*.up.sql")):
        match = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.up\.sql", up.name)
        if not match:
            raise WarehouseError(f"{up.name}: migration files are named NNNN_name.up.sql")
        down = up.with_name(up.name.replace(".up.sql", ".down.sql"))
        migrations.append(
            Migration(int(match[1]), match[2], up.read_text(), down.read_text() if down.exists() else "")
        )
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise WarehouseError(f"Two migrations share a version number in {directory}")
    return migrations


def _ensure_migrations_table(client: Client) -> None:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
        " version UInt32, name String, checksum String,"
        " applied_at DateTime64(3, 'UTC') DEFAULT now64(3))"
        " ENGINE = MergeTree ORDER BY version"
        " COMMENT 'One row per applied migration (yieldmeter migrate).'"
    )


def applied_migrations(client: Client) -> dict[int, str]:
    """version -> checksum of what has run."""
    _ensure_migrations_table(client)
    rows = client.query(f"SELECT version, checksum FROM {MIGRATIONS_TABLE} ORDER BY version").result_rows
    return {int(version): checksum for version, checksum in rows}


def migrate(client: Client, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply the migrations that have not run yet, in order; return them. Running twice changes nothing."""
    migrations = load_migrations() if migrations is None else migrations
    done = applied_migrations(client)
    applied = []
    for migration in migrations:
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise WarehouseError(
                    f"Migration {migration.version:04d}_{migration.name} was changed after it was applied. "
                    "Applied migrations are history: add a new migration instead."
                )
            continue
        for statement in Migration.statements(migration.up):
            client.command(statement)
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(migration)
    return applied


# Tables with a retention TTL, and the time column it counts from. Prices and discounts are
# history the repricing audit needs, so they are kept.
RETENTION = {"calls": "occurred_at", "sessions": "ended_at", "outcomes": "occurred_at", "dead_letters": "rejected_at"}


def apply_retention(client: Client, days: int) -> list[str]:
    """Set (days > 0) or remove (0) the TTL of the tables in RETENTION that exist; return them."""
    existing = {row[0] for row in client.query("SHOW TABLES").result_rows}
    changed = []
    for table, column in RETENTION.items():
        if table not in existing:
            continue
        if days:
            client.command(f"ALTER TABLE {table} MODIFY TTL toDateTime({column}) + INTERVAL {int(days)} DAY")
        else:
            ttl = client.query(
                "SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                parameters={"t": table},
            ).result_rows[0][0]
            if " TTL " in ttl:
                client.command(f"ALTER TABLE {table} REMOVE TTL")
        changed.append(table)
    return changed


def rollback(client: Client, to_version: int, migrations: list[Migration] | None = None) -> list[Migration]:
    """Run the down scripts of every applied migration above to_version, newest first."""
    migrations = load_migrations() if migrations is None else migrations
    done = applied_migrations(client)
    undone = []
    for migration in sorted(migrations, key=lambda m: m.version, reverse=True):
        if migration.version <= to_version or migration.version not in done:
            continue
        if not migration.down:
            raise WarehouseError(f"Migration {migration.version:04d}_{migration.name} has no down script.")
        for statement in Migration.statements(migration.down):
            client.command(statement)
        client.command(f"DELETE FROM {MIGRATIONS_TABLE} WHERE version = {migration.version}")
        undone.append(migration)
    return undone
