"""The alert modules import without a circle: one registry, imported by the rule modules, the
config and the engine, and filled with every rule whichever module is imported first."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.unit

ALERTS = PROJECT_ROOT / "yieldmeter" / "alerts"
MODULES = ("registry", "rules", "mart_rules", "config", "engine", "replay")


def _imports(module: str) -> set[str]:
    """The yieldmeter.alerts modules ``module`` imports at run time (not under TYPE_CHECKING)."""
    tree = ast.parse((ALERTS / f"{module}.py").read_text())
    found = set()
    for node in tree.body:  # top level only: an `if TYPE_CHECKING:` block is not an ast.Import*
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("yieldmeter.alerts"):
            found.add(node.module.removeprefix("yieldmeter.alerts").lstrip(".") or node.names[0].name)
    return found


def test_the_registry_imports_no_rule_module_and_the_rule_modules_not_each_other():
    assert _imports("registry") <= {"model"}
    assert "registry" in _imports("rules") and "registry" in _imports("mart_rules")
    assert not {"rules", "mart_rules", "config"} & (_imports("rules") | _imports("mart_rules"))
    assert "rules" not in _imports("config") and "rules" not in _imports("engine")


@pytest.mark.parametrize("module", MODULES)
def test_every_rule_is_registered_whichever_module_is_imported_first(module):
    code = (f"import yieldmeter.alerts.{module}\n"
            "from yieldmeter.alerts.registry import RULES\nprint(' '.join(sorted(RULES)))")
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    from yieldmeter.alerts import RULES

    assert names == sorted(RULES)
    assert {"spend_spike", "budget_burn", "tokenmaxxing"} <= set(names)
