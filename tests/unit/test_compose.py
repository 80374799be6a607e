"""docker-compose.yml and its images agree with the rest of the project.

No Docker engine runs where the tests run, so the server stack cannot be started here; these
tests read the files instead: service names, ports bound to 127.0.0.1, the Kafka listeners
against the settings, the topics against infra/topics.yaml, the Flink image against
requirements/flink.lock and infra/maven/flink/pom.xml, and health checks.
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from yieldmeter.config import ENV_PREFIX, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
FLINK_DOCKERFILE = ROOT / "infra" / "flink" / "Dockerfile"
APP_DOCKERFILE = ROOT / "infra" / "app" / "Dockerfile"
FLINK_LOCK = ROOT / "requirements" / "flink.lock"
FLINK_POM = ROOT / "infra" / "maven" / "flink" / "pom.xml"
KAFKA_POM = ROOT / "infra" / "maven" / "kafka" / "pom.xml"
TOPICS_YAML = ROOT / "infra" / "topics.yaml"
SERVER_DOC = ROOT / "docs" / "server-mode.md"

REQUIRED_SERVICES = {"kafka", "topics", "jobmanager", "taskmanager", "clickhouse", "migrate", "dbt-docs"}
JOBS_IN_IMAGE = "/opt/yieldmeter/jobs"


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The default settings: nothing from the developer's environment or .env leaks in."""
    import os

    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    return Settings(_env_file=None)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


_VAR = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's variable interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, $$."""
    env = env or {}

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(3)
        default = match.group(2) or ""
        return env.get(name) or default

    return _VAR.sub(replace, value)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def published_ports(service: dict) -> list[tuple[str | None, int, int]]:
    """(host_ip, published port, container port) of every published port of a service."""
    result = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published = port.get("published")
            if published is None:
                result.append((port.get("host_ip"), -1, int(port["target"])))
            else:
                result.append((port.get("host_ip"), int(str(published)), int(port["target"])))
            continue
        spec = str(port).split("/")[0]
        if spec.startswith("["):  # [::1]:8080:8080
            host, _, rest = spec[1:].partition("]:")
            published, _, target = rest.partition(":")
            result.append((host, int(published), int(target)))
            continue
        parts = spec.split(":")
        if len(parts) == 3:
            result.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            result.append((None, int(parts[0]), int(parts[1])))
        else:
            result.append((None, -1, int(parts[0])))
    return result


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """KAFKA_LISTENERS / KAFKA_ADVERTISED_LISTENERS -> {listener name: (host, port)}."""
    result = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def command_lines(service: dict) -> list[list[str]]:
    """The service's command as shell words, one list per line of a `sh -c` script."""
    command = service.get("command")
    if command is None:
        return []
    if isinstance(command, str):
        return [shlex.split(line) for line in command.splitlines() if line.strip()]
    if command and command[0] in ("sh", "/bin/sh", "bash", "/bin/bash"):
        script = command[-1]
        return [shlex.split(line) for line in script.splitlines() if line.strip()]
    return [list(map(str, command))]


def dockerfile_args(path: Path) -> dict[str, str]:
    args = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*ARG\s+(\w+)=(\S+)", line)
        if match:
            args[match.group(1)] = match.group(2).strip("\"'")
    return args


def lock_versions(path: Path) -> dict[str, str]:
    versions = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            versions[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return versions


def pom_property(path: Path, name: str) -> str | None:
    for element in ET.parse(path).getroot().iter():
        if element.tag.rpartition("}")[2] == name:
            return (element.text or "").strip()
    return None


def image_tag(service: dict) -> tuple[str, str]:
    name, _, tag = service["image"].rpartition(":")
    return name, tag


# --- services and ports ------------------------------------------------------------------------


def test_required_services_exist(services: dict) -> None:
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"docker-compose.yml lacks the services {sorted(missing)}"


def test_every_published_port_is_bound_to_localhost(services: dict) -> None:
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name}: host networking bypasses the 127.0.0.1 binding"
        for host_ip, published, target in published_ports(service):
            assert host_ip == "127.0.0.1", (
                f"{name}: port {target} is published on {host_ip or 'every interface'}; "
                f"write it as \"127.0.0.1:{published}:{target}\""
            )
            assert published > 0, f"{name}: port {target} gets a random host port; give it a fixed one"


def test_expected_ports_are_published(services: dict) -> None:
    expected = {"jobmanager": (8081, 8081), "clickhouse": (8123, 8123), "dbt-docs": (8080, 8080)}
    for name, (published, target) in expected.items():
        assert ("127.0.0.1", published, target) in published_ports(services[name]), name


# --- Kafka ---------------------------------------------------------------------------------------


def test_kafka_host_port_is_the_settings_default(services: dict, settings: Settings) -> None:
    kafka = services["kafka"]
    ports = published_ports(kafka)
    assert ("127.0.0.1", settings.kafka_port, settings.kafka_port) in ports, (
        f"kafka must publish 127.0.0.1:{settings.kafka_port}:{settings.kafka_port} "
        f"(Settings.kafka_port); found {ports}"
    )
    env = environment(kafka)
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    host_listener = [name for name, (_, port) in bound.items() if port == settings.kafka_port]
    assert len(host_listener) == 1, f"one listener must bind port {settings.kafka_port}: {bound}"
    assert advertised.get(host_listener[0]) == ("127.0.0.1", settings.kafka_port), (
        f"listener {host_listener[0]} must be advertised as 127.0.0.1:{settings.kafka_port}, "
        "the address host clients are given back in metadata"
    )
    assert settings.bootstrap_servers == f"127.0.0.1:{settings.kafka_port}"


def test_kafka_kraft_single_node(services: dict) -> None:
    env = environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in bound and controller not in advertised
    assert set(bound) <= set(protocols), f"every listener needs a protocol: {protocols}"
    node_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node_id == str(env["KAFKA_NODE_ID"])
    assert voter == f"kafka:{bound[controller][1]}"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", f"{key} must be 1 on a single node"
    assert len(env["CLUSTER_ID"]) == 22, "CLUSTER_ID is a base64 UUID (22 characters)"


def internal_bootstrap(services: dict) -> str:
    advertised = listeners(environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"])
    internal = [f"{host}:{port}" for host, port in advertised.values() if host == "kafka"]
    assert len(internal) == 1, f"one listener must be advertised as kafka:<port> for containers: {advertised}"
    return internal[0]


def test_kafka_images_match_the_maven_kafka_version(services: dict) -> None:
    name, tag = image_tag(services["kafka"])
    assert name == "apache/kafka"
    assert services["topics"]["image"] == services["kafka"]["image"]
    if not KAFKA_POM.exists():
        pytest.skip("infra/maven/kafka/pom.xml does not exist yet")
    assert tag == pom_property(KAFKA_POM, "kafka.version"), "apache/kafka tag != kafka.version in the pom"


def created_topics(services: dict) -> dict[str, dict]:
    """{topic: {"partitions": n, "config": {...}, "bootstrap": ...}} from the topics service."""
    topics = {}
    for words in command_lines(services["topics"]):
        if not words or not words[0].endswith("kafka-topics.sh") or "--create" not in words:
            continue
        spec: dict = {"config": {}}
        for flag, value in zip(words, words[1:]):
            if flag == "--topic":
                spec["name"] = value
            elif flag == "--partitions":
                spec["partitions"] = int(value)
            elif flag == "--replication-factor":
                spec["replication"] = int(value)
            elif flag == "--bootstrap-server":
                spec["bootstrap"] = value
            elif flag == "--config":
                key, _, config_value = value.partition("=")
                spec["config"][key] = config_value
        assert "name" in spec, f"kafka-topics.sh --create without --topic: {words}"
        topics[spec.pop("name")] = spec
    return topics


def test_topics_service_creates_the_settings_topics(services: dict, settings: Settings) -> None:
    topics = created_topics(services)
    assert set(topics) == set(settings.topics.values()), (
        f"the topics service creates {sorted(topics)}, the settings name {sorted(settings.topics.values())}"
    )


def test_topic_layout_matches_topics_yaml(services: dict, settings: Settings) -> None:
    layout = yaml.safe_load(TOPICS_YAML.read_text())
    assert set(layout) == set(settings.topics), "infra/topics.yaml keys != Settings.topics keys"
    topics = created_topics(services)
    bootstrap = internal_bootstrap(services)
    for key, spec in layout.items():
        created = topics[settings.topics[key]]
        assert created["partitions"] == spec["partitions"], f"{key}: partitions differ from infra/topics.yaml"
        expected_config = {name: str(value) for name, value in (spec.get("config") or {}).items()}
        assert created["config"] == expected_config, f"{key}: configs differ from infra/topics.yaml"
        assert created.get("replication") == 1, f"{key}: one replica on a single broker"
        assert created.get("bootstrap") == bootstrap, f"{key}: the topics service must use {bootstrap}"


# --- yieldmeter containers ---------------------------------------------------------------------


def test_yieldmeter_env_anchor_holds_valid_settings(compose: dict, services: dict, monkeypatch) -> None:
    anchor = {key: str(value) for key, value in compose["x-yieldmeter-env"].items()}
    fields = set(Settings.model_fields)
    for key in anchor:
        assert key.startswith(ENV_PREFIX), f"x-yieldmeter-env: {key} is not a yieldmeter setting"
        # Settings ignores unknown YIELDMETER_* variables, so a typo here would go unnoticed.
        assert key[len(ENV_PREFIX):].lower() in fields, f"x-yieldmeter-env: {key} names no field of Settings"

    import os

    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    for key, value in anchor.items():
        monkeypatch.setenv(key, interpolate(value))
    in_compose = Settings(_env_file=None)

    assert in_compose.bootstrap_servers == internal_bootstrap(services)
    url = urlsplit(in_compose.warehouse_url)
    clickhouse = services["clickhouse"]
    ch_env = environment(clickhouse)
    assert url.scheme == "http" and url.hostname == "clickhouse" and url.port == 8123
    assert any(target == 8123 for _, _, target in published_ports(clickhouse))
    assert url.username == ch_env["CLICKHOUSE_USER"]
    assert url.password == interpolate(ch_env["CLICKHOUSE_PASSWORD"])
    assert url.path.strip("/") == ch_env["CLICKHOUSE_DB"]
    # Same variable (and default) for the password on both sides.
    assert f":{ch_env['CLICKHOUSE_PASSWORD']}@" in anchor[f"{ENV_PREFIX}CLICKHOUSE_URL"]

    for name in ("migrate", "dbt-docs"):
        env = environment(services[name])
        for key, value in anchor.items():
            assert env.get(key) == value, f"{name} must take {key} from x-yieldmeter-env"


def test_migrate_is_a_one_shot_yieldmeter_migrate(services: dict) -> None:
    migrate = services["migrate"]
    assert command_lines(migrate) == [["yieldmeter", "migrate"]]
    assert migrate["build"]["dockerfile"] == "infra/app/Dockerfile"
    assert migrate["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_dbt_docs_generates_then_serves(services: dict) -> None:
    dbt = services["dbt-docs"]
    assert dbt["working_dir"] == "/app/dbt"
    assert dbt["build"] == services["migrate"]["build"]
    lines = command_lines(dbt)
    generate = next(i for i, words in enumerate(lines) if words[:3] == ["dbt", "docs", "generate"])
    serve = next(i for i, words in enumerate(lines) if "serve" in words)
    assert generate < serve
    words = lines[serve]
    port = int(words[words.index("--port") + 1])
    assert words[words.index("--host") + 1] == "0.0.0.0"
    assert any(target == port for _, _, target in published_ports(dbt))
    assert dbt["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


# --- health checks and start order -------------------------------------------------------------


def test_every_service_has_a_healthcheck_or_is_a_one_shot(services: dict) -> None:
    for name, service in services.items():
        healthcheck = service.get("healthcheck") or {}
        has_check = bool(healthcheck.get("test")) and not healthcheck.get("disable") and healthcheck["test"] != ["NONE"]
        one_shot = service.get("restart") == "no"
        assert has_check or one_shot, f"{name}: give it a healthcheck, or restart: \"no\" if it is a one-shot"
        assert not (has_check and one_shot), f"{name}: a one-shot with a healthcheck is never healthy for long"


def test_depends_on_conditions_fit_the_services(services: dict) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions, not a bare list"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on an unknown service {dependency}"
            condition = spec.get("condition")
            if services[dependency].get("restart") == "no":
                assert condition == "service_completed_successfully", f"{name} -> {dependency}"
            else:
                assert condition == "service_healthy", f"{name} -> {dependency}"
                assert services[dependency].get("healthcheck"), f"{dependency} has no healthcheck"


# --- images --------------------------------------------------------------------------------------


def test_build_contexts_and_dockerfiles_exist(services: dict) -> None:
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        context = ROOT / build["context"]
        assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} is missing"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for entry in (".venv", ".venv-flink", ".yieldmeter", ".git"):
        assert entry in ignored, f".dockerignore must exclude {entry}"


def test_flink_image_matches_the_lock_and_the_connector_pom(services: dict) -> None:
    args = dockerfile_args(FLINK_DOCKERFILE)
    text = FLINK_DOCKERFILE.read_text()
    flink_version = args["FLINK_VERSION"]
    connector_version = args["KAFKA_CONNECTOR_VERSION"]

    assert re.search(r"^FROM flink:\$\{FLINK_VERSION\}-scala_2\.12-java17\s*$", text, re.M)
    lock = lock_versions(FLINK_LOCK)
    assert lock["apache-flink"] == flink_version, "apache-flink in requirements/flink.lock != FLINK_VERSION"
    assert lock.get("apache-flink-libraries", flink_version) == flink_version
    assert "requirements/flink.lock" in text, "the Flink image must install requirements/flink.lock"

    # flink-sql-connector-kafka X.Y.Z-A.B is built for Flink A.B.
    assert connector_version.rpartition("-")[2] == ".".join(flink_version.split(".")[:2])
    assert "/opt/flink/lib/flink-sql-connector-kafka-${KAFKA_CONNECTOR_VERSION}.jar" in text

    for name in ("jobmanager", "taskmanager"):
        assert services[name]["build"]["dockerfile"] == "infra/flink/Dockerfile"
        assert image_tag(services[name])[1] == flink_version, f"{name}: image tag != FLINK_VERSION"

    if not FLINK_POM.exists():
        pytest.skip("infra/maven/flink/pom.xml does not exist yet")
    assert pom_property(FLINK_POM, "zstd.version") == args["ZSTD_VERSION"], (
        "ZSTD_VERSION in infra/flink/Dockerfile != zstd.version in infra/maven/flink/pom.xml"
    )
    assert pom_property(FLINK_POM, "flink.connector.version") == connector_version, (
        "KAFKA_CONNECTOR_VERSION in infra/flink/Dockerfile != flink.connector.version in infra/maven/flink/pom.xml"
    )


def test_job_files_are_where_the_docs_submit_them_from(services: dict) -> None:
    assert re.search(rf"^COPY .*jobs/ {JOBS_IN_IMAGE}/?\s*$", FLINK_DOCKERFILE.read_text(), re.M)
    for name in ("jobmanager", "taskmanager"):
        mounts = [str(volume) for volume in services[name].get("volumes", [])]
        assert any(m.split(":")[1] == JOBS_IN_IMAGE for m in mounts if m.startswith("./jobs:")), name
    doc = SERVER_DOC.read_text()
    assert f"-py {JOBS_IN_IMAGE}/" in doc
    assert f"--bootstrap {internal_bootstrap(services)}" in doc


def test_python_versions_agree_with_pyproject() -> None:
    flink_python = dockerfile_args(FLINK_DOCKERFILE)["PYTHON_VERSION"]
    app_python = dockerfile_args(APP_DOCKERFILE)["PYTHON_VERSION"]
    assert flink_python == app_python == "3.11"
    app_text = APP_DOCKERFILE.read_text()
    assert "pip install -r requirements/app.lock" in app_text
    assert "pip install --no-deps -e ./sdk -e ." in app_text
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("pyproject.toml does not exist yet")
    import tomllib

    from packaging.specifiers import SpecifierSet

    requires = tomllib.loads(pyproject.read_text())["project"]["requires-python"]
    assert f"{app_python}.0" in SpecifierSet(requires), f"Python {app_python} is outside requires-python {requires}"
