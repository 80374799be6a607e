"""yieldmeter.transform without a warehouse: argument handling, the server target's variables
from a URL, and the dbt project's own house rules (one YAML per model, grain stated, every
column listed, metrics documented in one line)."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from tests.conftest import make_settings
from yieldmeter.transform import (
    DBT_DIR, TransformError, check_warehouse, dbt_arguments, project_version, run_dbt, server_environment,
)

pytestmark = pytest.mark.unit

MODELS = sorted((DBT_DIR / "models").rglob("*.sql"))


@pytest.mark.parametrize(("given", "expected"), [
    ([], ["build"]),
    (["--select", "marts"], ["build", "--select", "marts"]),
    (["test", "--select", "fct_calls"], ["test", "--select", "fct_calls"]),
    (["source", "freshness"], ["source", "freshness"]),
    (["--vars", "{as_of: '2026-11-08'}"], ["build", "--vars", "{as_of: '2026-11-08'}"]),
])
def test_arguments_default_to_dbt_build(given, expected):
    assert dbt_arguments(given) == expected


def test_server_target_variables_come_from_the_url():
    env = server_environment("https://analyst:p%40ss%2Fword@ch.example.com:9443/yieldmeter")
    assert env == {
        "DBT_TARGET": "server", "CLICKHOUSE_HOST": "ch.example.com", "CLICKHOUSE_PORT": "9443",
        "CLICKHOUSE_USER": "analyst", "CLICKHOUSE_PASSWORD": "p@ss/word", "CLICKHOUSE_DATABASE": "yieldmeter",
        "CLICKHOUSE_SECURE": "true",
    }
    defaults = server_environment("http://clickhouse")
    assert (defaults["CLICKHOUSE_PORT"], defaults["CLICKHOUSE_USER"], defaults["CLICKHOUSE_PASSWORD"],
            defaults["CLICKHOUSE_DATABASE"], defaults["CLICKHOUSE_SECURE"]) == ("8123", "default", "", "default", "false")


def test_server_profile_renders_from_the_url_and_the_password_stays_out_of_the_logs(tmp_path, capfd):
    settings = make_settings(tmp_path / "state", clickhouse_url="http://dbt:s3cret-pw@127.0.0.1:1/analytics")
    run = run_dbt(settings, ["parse"])  # renders profiles.yml's server target; needs no server
    assert run.success
    logs = (tmp_path / "state" / "dbt" / "logs" / "dbt.log").read_text()
    assert "s3cret-pw" not in logs + capfd.readouterr().out


def test_a_project_parsed_ahead_is_the_one_the_next_command_uses(tmp_path):
    """What `yieldmeter run` does when it starts: parse once, then build without parsing again."""
    settings = make_settings(tmp_path / "state", clickhouse_url="http://127.0.0.1:1/analytics")
    log = tmp_path / "state" / "dbt" / "logs" / "dbt.log"
    assert run_dbt(settings, ["parse", "--quiet"], keep_manifest=True).success
    assert log.read_text().count("Running with dbt=") == 1  # the parse asked for, not a second one
    assert run_dbt(settings, ["ls", "--quiet"], keep_manifest=True).success
    assert log.read_text().count("Running with dbt=") == 2  # ls alone: no parse before it


@pytest.mark.parametrize(("edited", "changes"), [
    ("models/marts/core/fct_calls.sql", True),
    ("macros/metrics.sql", True),
    ("dbt_project.yml", True),
    ("models/marts/core/fct_calls.yml", False),  # docs and tests: the rows stay what they were
    ("tests/assert_every_call_in_a_session.sql", False),
])
def test_the_project_version_follows_what_decides_the_rows(tmp_path, edited, changes):
    project = tmp_path / "dbt"
    shutil.copytree(DBT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    assert project_version(project) == project_version(DBT_DIR)
    with (project / edited).open("a") as file:
        file.write("\n-- edited\n" if edited.endswith(".sql") else "\n# edited\n")
    assert (project_version(project) != project_version(DBT_DIR)) == changes


def test_a_missing_embedded_warehouse_is_not_created(tmp_path):
    with pytest.raises(TransformError, match="yieldmeter migrate"):
        check_warehouse(f"chdb://{tmp_path / 'nowhere'}")
    assert not (tmp_path / "nowhere").exists()


# --- the project's house rules ------------------------------------------------------------------


def _model_yaml(sql):
    path = sql.with_suffix(".yml")
    assert path.exists(), f"{sql.name} has no YAML beside it"
    (model,) = [m for m in yaml.safe_load(path.read_text())["models"] if m["name"] == sql.stem]
    return model


@pytest.mark.parametrize("sql", MODELS, ids=lambda p: p.stem)
def test_each_model_has_its_yaml_stating_its_grain_and_columns(sql):
    model = _model_yaml(sql)
    assert model["description"].lower().startswith("one row per"), f"{sql.stem}: state the grain first"
    assert model.get("columns"), f"{sql.stem}: list and describe its columns"
    assert all(c.get("description") for c in model["columns"]), f"{sql.stem}: a column without a description"


def test_keys_are_tested():
    """Each model tests its key: a unique column, or a unique combination at model level."""
    for sql in MODELS:
        model = _model_yaml(sql)
        column_tests = [t for c in model["columns"] for t in c.get("data_tests", [])
                        if t == "unique" or (isinstance(t, dict) and "unique" in t)]
        model_tests = [t for t in model.get("data_tests", []) if isinstance(t, dict) and "unique_combination" in t]
        assert column_tests or model_tests, f"{sql.stem}: no test on its key"


def test_every_metric_is_defined_in_one_line():
    docs = (DBT_DIR / "models" / "docs" / "metrics.md").read_text()
    blocks = dict(re.findall(r"{% docs (\w+) %}(.*?){% enddocs %}", docs, re.S))
    metrics = ["cost_per_successful_outcome_usd", "tokens_per_outcome", "outcomes_per_million_tokens",
               "idle_token_share", "waste_cost_share", "cache_hit_share", "verbosity_vs_peers", "value_over_cost",
               "success_rate", "volume_z", "yield_z", "shortfall_z"]
    for metric in metrics:
        assert metric in blocks and "\n" not in blocks[metric].strip(), metric


def test_exposures_are_documented():
    exposures = yaml.safe_load((DBT_DIR / "models" / "exposures.yml").read_text())["exposures"]
    assert {"slack_alerts", "value_report"} <= {e["name"] for e in exposures}


def test_marts_read_by_code_have_enforced_contracts():
    """Every mart an exposure (alerts, report, demo, FOCUS export) reads is an interface: enforced
    contract, every column typed; and the project pins the dbt it is tested with."""
    exposures = yaml.safe_load((DBT_DIR / "models" / "exposures.yml").read_text())["exposures"]
    read = {re.fullmatch(r"ref\('(\w+)'\)", d)[1] for e in exposures for d in e["depends_on"] if d.startswith("ref(")}
    assert {"fct_calls", "value_metrics_daily", "tokenmaxxing_signals", "model_overkill", "budget_status",
            "focus_ai_spend"} <= read
    for name in read:
        (sql,) = [m for m in MODELS if m.stem == name]
        model = _model_yaml(sql)
        assert model.get("config", {}).get("contract", {}).get("enforced") is True, f"{name}: no enforced contract"
        assert all(c.get("data_type") for c in model["columns"]), f"{name}: a column without data_type"
    project = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())
    assert project["require-dbt-version"]
