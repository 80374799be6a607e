"""One configuration model for every command, job launcher and test.

Every setting is read from the environment with the prefix ``YIELDMETER_`` (or a ``.env``
file in the working directory). A bad value stops start-up with one message that names
the setting and what it accepts; see :func:`load_settings`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from yieldmeter.errors import YieldmeterError
from yieldmeter_sdk.producer import ENV_PREFIX, KAFKA_PORT, TOPIC_DLQ, TOPIC_EVENTS, TOPIC_OUTCOMES


def _topic_name(value: str) -> str:
    # Kafka's own rule (kafka.common.internals.Topic): 1-249 of [a-zA-Z0-9._-].
    import re

    if not re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", value):
        raise ValueError("a Kafka topic name is 1-249 characters of letters, digits, '.', '_' and '-'")
    return value


TopicName = Annotated[str, AfterValidator(_topic_name)]
Port = Annotated[int, Field(ge=1024, le=65535)]


class Settings(BaseSettings):
    """yieldmeter's settings. Environment variable = ``YIELDMETER_`` + the field name in capitals."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    state_dir: Path = Field(
        Path(".yieldmeter"),
        description="Folder for local state: broker data and logs, the embedded warehouse, "
        "Flink checkpoints, fetched jars. Relative paths are resolved against the working directory.",
    )
    lib_dir: Path | None = Field(
        None,
        description="Folder holding the jars `make setup` fetched (kafka/ and flink/). Default: <state_dir>/lib.",
    )

    kafka_bootstrap: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port[,host:port]). Unset: the local broker that "
        "`yieldmeter up` starts on 127.0.0.1:<kafka_port>. Set: those brokers are used and no local one starts.",
    )
    kafka_port: Port = Field(KAFKA_PORT, description="Client port of the local broker.")
    kafka_controller_port: Port = Field(9093, description="KRaft controller port of the local broker.")

    clickhouse_url: str | None = Field(
        None,
        description="Warehouse URL: chdb:///path (embedded engine, one process per folder) or "
        "http(s)://user:password@host:port/database. Default: chdb:///<state_dir>/warehouse.",
    )

    topic_events: TopicName = Field(TOPIC_EVENTS, description="One event per LLM call (producers write).")
    topic_outcomes: TopicName = Field(TOPIC_OUTCOMES, description="One event per business outcome.")
    topic_prices: TopicName = Field("usage.prices", description="Price catalog and org discounts, compacted, keyed by price id.")
    topic_priced: TopicName = Field("usage.priced", description="Priced calls (Flink writes).")
    topic_sessions: TopicName = Field("usage.sessions", description="Closed sessions (Flink writes).")
    topic_dlq: TopicName = Field(TOPIC_DLQ, description="Dead letters: invalid input with its reason.")
    topic_budgets: TopicName = Field("usage.budgets", description="Spend budgets, compacted, keyed by budget id.")
    topic_controls: TopicName = Field(
        "usage.controls", description="Budget decisions per scope for gateways, compacted, keyed by budget id (Flink writes)."
    )

    ingest_batch_size: int = Field(
        20_000, ge=1, le=1_000_000, description="Most records the warehouse ingest inserts per batch."
    )
    retention_days: int = Field(
        0, ge=0, le=36500,
        description="Days the warehouse keeps calls, sessions, outcomes and dead letters (a TTL); 0 = keep forever.",
    )

    slack_webhook_url: SecretStr | None = Field(
        None, description="Slack Incoming Webhook for alerts. Unset: alerts are stored and printed."
    )

    dbt_threads: int = Field(
        4, ge=1, le=64,
        description="Models and tests dbt builds side by side, each on its own warehouse client. More threads raise a "
        "full build's peak memory (at 10M calls on the embedded engine: 5.3 GB with 4, 3.6 GB with 1).",
    )
    flink_parallelism: int = Field(2, ge=1, le=256, description="Parallelism of the Flink jobs.")
    flink_state_backend: Literal["hashmap", "rocksdb"] = Field(
        "hashmap",
        description="Where the pipeline keeps its state (the deduplication's event ids, open sessions): hashmap on the "
        "JVM heap, or rocksdb on local disk with incremental checkpoints (for more ids than the heap holds; see "
        "jobs/README.md, State).",
    )
    flink_max_heap: str | None = Field(
        None, pattern=r"^[1-9][0-9]*[mMgG]$",
        description="Heap of the local Flink JVM (-Xmx), e.g. 1g; unset: the JVM's default (a quarter of the memory).",
    )
    flink_checkpoint_interval: str = Field(
        "2s",
        description="How often the Flink jobs checkpoint, e.g. 2s or 1s: also how often their exactly-once Kafka "
        "output is committed and so becomes visible (spend controls lag the calls by about this much).",
    )
    flink_python: Path | None = Field(
        None,
        description="Python of the Flink environment (apache-flink). Default: .venv-flink/bin/python beside the "
        "environment yieldmeter runs in (make setup's layout: .venv and .venv-flink side by side).",
    )

    otlp_enabled: bool = Field(False, description="`yieldmeter run` also runs the OTLP intake (`yieldmeter otlp`).")
    otlp_host: str = Field(
        "127.0.0.1", description="Address the OTLP intake listens on; 0.0.0.0 to accept spans from other machines."
    )
    otlp_port: Port = Field(4318, description="Port of the OTLP/HTTP intake (POST /v1/traces); 4318 is OTLP/HTTP's own.")
    otlp_max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, le=1024**3,
        description="Largest OTLP request body, after gzip is undone; a larger one is answered 413.",
    )
    otlp_default_org: str | None = Field(
        None, description="org_id of a GenAI span with no yieldmeter.org_id attribute (unset: it is a dead letter)."
    )
    otlp_default_team: str | None = Field(
        None, description="team of a GenAI span with no yieldmeter.team attribute (unset: it is a dead letter)."
    )
    otlp_default_user: str | None = Field(
        None, description="user_id of a GenAI span with no user.id attribute (unset: it is a dead letter)."
    )

    @field_validator("flink_checkpoint_interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"[1-9]\d*\s*(ms|s|min)", value.strip()):
            raise ValueError("a duration such as 5s, 1s, 500ms or 1min")
        return value.strip()

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"'{server}' is not host:port; give a comma-separated list of host:port")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _clickhouse_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        parts = urlsplit(value)
        if parts.scheme == "chdb":
            if not parts.path or parts.path == "/":
                raise ValueError("a chdb URL names a folder: chdb:///absolute/path")
        elif parts.scheme in ("http", "https"):
            if not parts.hostname:
                raise ValueError("an http(s) URL names a host: http://user:password@host:8123/database")
        else:
            raise ValueError("use chdb:///path for the embedded engine or http(s)://user:password@host:port/db")
        return value

    # --- derived values: computed here so nothing else spells out a default path --------------

    # Plain properties, not cached: model_copy(update=...) must not carry a stale path along.
    @property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()

    @property
    def lib_path(self) -> Path:
        return (self.lib_dir or self.state_path / "lib").expanduser().resolve()

    @property
    def uses_local_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def warehouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{self.state_path / 'warehouse'}"

    @property
    def flink_python_path(self) -> Path:
        return self.flink_python or Path(sys.prefix).parent / ".venv-flink" / "bin" / "python"

    @property
    def topics(self) -> dict[str, str]:
        """Logical topic key (as in infra/topics.yaml) -> topic name."""
        return {
            "events": self.topic_events,
            "outcomes": self.topic_outcomes,
            "prices": self.topic_prices,
            "priced": self.topic_priced,
            "sessions": self.topic_sessions,
            "dlq": self.topic_dlq,
            "budgets": self.topic_budgets,
            "controls": self.topic_controls,
        }


class ConfigError(YieldmeterError):
    """A setting has a value it cannot take; the message names the setting and the fix."""


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "?"
        reason = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{ENV_PREFIX}{field.upper()}={problem.get('input')}: {reason}")
    return "Invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides) -> Settings:
    """Read the settings; raise ConfigError with a readable message instead of a traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None
