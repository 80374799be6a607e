"""The alerts YAML: layers, validation messages that name the file and field, routing."""

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from yieldmeter.alerts.config import AlertsConfigError, build_config, load_config
from yieldmeter.alerts.rules import RULES
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.unit

EXAMPLE = PROJECT_ROOT / "infra" / "alerts.example.yaml"


def test_example_file_loads_and_documents_the_builtin_defaults():
    example = load_config(EXAMPLE)
    builtin = load_config(None)
    assert builtin.source == "built-in defaults"
    for name in RULES:  # the example shows the real defaults, so it cannot drift from the code
        assert example.params(name, "", "") == builtin.params(name, "", ""), name
    assert example.params("spend_spike", "acme", "support").min_cost_usd == Decimal("20")


def test_layers_later_wins_and_team_builds_on_its_org():
    config = build_config(
        {
            "defaults": {"cooldown_minutes": 60},
            "rules": {"spend_spike": {"k": 5}},
            "overrides": [
                {"org": "acme", "team": "research", "rules": {"spend_spike": {"ratio": 4}}},  # listed first
                {"org": "acme", "rules": {"spend_spike": {"min_cost_usd": "20"}, "error_rate_spike": {"enabled": False}}},
            ],
        },
        "test.yaml",
    )
    base = config.params("spend_spike", "other", "x")
    assert (base.cooldown_minutes, base.k, base.ratio, base.min_cost_usd) == (60, 5, Decimal("1.5"), 1)
    org = config.params("spend_spike", "acme", "sales")
    assert (org.k, org.ratio, org.min_cost_usd) == (5, Decimal("1.5"), 20)
    team = config.params("spend_spike", "acme", "research")
    assert (team.k, team.ratio, team.min_cost_usd, team.cooldown_minutes) == (5, 4, 20, 60)
    assert config.params("error_rate_spike", "acme", "research").enabled is False
    assert config.params("error_rate_spike", "globex", "").enabled is True
    assert len(config.variants("spend_spike")) == 3


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"rules": {"spend_spike": {"k": "lots"}}}, "rules.spend_spike.k: Input should be a valid decimal"),
        ({"rules": {"spend_spike": {"kk": 3}}}, "rules.spend_spike.kk: unknown setting (known: enabled"),
        ({"rules": {"spend_spike": {"levels": ["planet"]}}}, "rules.spend_spike.levels[0]: Input should be 'org', 'team' or 'app'"),
        ({"rules": {"spend_spike": {"weeks": 2, "min_weeks": 3}}}, "min_weeks (3) cannot exceed weeks (2)"),
        ({"rules": {"spend_spikes": {}}}, "rules.spend_spikes: no rule named 'spend_spikes'"),
        ({"rules": {"budget_burn": {"warn_share": 1.2}}}, "rules.budget_burn: warn_share (1.2) cannot exceed critical_share (1)"),
        ({"overrides": [{"org": "a", "rules": {"dead_letter_spike": {"min_count": 0}}}]},
         "overrides[0].rules.dead_letter_spike.min_count: Input should be greater than or equal to 1"),
        ({"overrides": [{"team": "x", "rules": {}}]}, "overrides[0].org: Field required"),
        ({"defaults": {"k": 3}}, "defaults.k: unknown setting (every rule has: cooldown_minutes, enabled, worsen_factor)"),
        ({"routes": {"x": {}}}, "routes.x: give exactly one of webhook_url_env (preferred) or webhook_url"),
        ({"routing": [{"org": "a", "route": "nowhere"}]}, "routing[0].route: no route named 'nowhere'"),
        ({"delivery": {"max_retries": -1}}, "delivery.max_retries: Input should be greater than or equal to 0"),
        ({"colour": "red"}, "colour: unknown setting"),
    ],
)
def test_errors_name_the_file_and_the_field(data, expected):
    with pytest.raises(AlertsConfigError) as error:
        build_config(data, "alerts.yaml")
    assert str(error.value).startswith("alerts.yaml:")
    assert expected in str(error.value)


def test_file_errors(tmp_path: Path):
    with pytest.raises(AlertsConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  spend_spike: {k: [\n")
    with pytest.raises(AlertsConfigError, match=r"broken.yaml: line \d+, column \d+: not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(AlertsConfigError, match="top level must be a mapping"):
        load_config(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty).params("spend_spike", "", "").k == Decimal("3.5")


def test_routing_most_specific_wins_and_secrets_stay_secret(monkeypatch):
    config = build_config(
        {
            "routes": {"support": {"webhook_url_env": "YM_TEST_SUPPORT"}, "finops": {"webhook_url": "https://x/y"}},
            "routing": [{"org": "acme", "route": "finops"}, {"org": "acme", "team": "support", "route": "support"}],
        },
        "alerts.yaml",
        default_webhook=SecretStr("https://hooks.example/default"),
    )
    monkeypatch.delenv("YM_TEST_SUPPORT", raising=False)
    missing = config.route_for("acme", "support")
    assert (missing.name, missing.url, missing.unrouted) == ("support", None, False)
    assert "YM_TEST_SUPPORT is not set" in missing.problem
    monkeypatch.setenv("YM_TEST_SUPPORT", "https://hooks.example/support")
    assert config.route_for("acme", "support").url.get_secret_value() == "https://hooks.example/support"
    assert config.route_for("acme", "sales").name == "finops"
    fallback = config.route_for("globex", "")
    assert fallback.name == "default" and fallback.url.get_secret_value() == "https://hooks.example/default"
    assert "hooks.example" not in repr(fallback)  # SecretStr hides it
    assert build_config({}, "x").route_for("acme", "").unrouted  # no webhook anywhere: print, not an error
