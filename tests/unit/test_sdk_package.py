"""The SDK distribution (sdk/) stays light and runs on Python 3.9: checked on its source, so the
unit tier says so at once (tests/e2e/test_installed.py installs and runs it on 3.9 to 3.13)."""

from __future__ import annotations

import ast
import sys
import tomllib

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.unit

SDK = PROJECT_ROOT / "sdk"
MODULES = sorted((SDK / "yieldmeter_sdk").glob("*.py"))
# What the SDK may import besides the standard library: its declared dependencies' packages.
THIRD_PARTY = {"pydantic": "pydantic", "pydantic_core": "pydantic", "confluent_kafka": "confluent-kafka"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_sdk_modules_parse_as_python_3_9(path):
    ast.parse(path.read_text(), feature_version=(3, 9))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_union_operator_in_class_annotations(path):
    # pydantic evaluates a model's field annotations at run time, even under `from __future__ import
    # annotations`, and `X | None` does not evaluate before Python 3.10: Optional[X] there.
    found = [f"{path.name}:{node.lineno}" for cls in ast.walk(ast.parse(path.read_text())) if isinstance(cls, ast.ClassDef)
             for node in cls.body if isinstance(node, ast.AnnAssign)
             and any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(node.annotation))]
    assert not found, f"X | Y in class-level annotations (use Optional/Union): {found}"


def test_sdk_imports_only_its_declared_dependencies():
    declared = {req.split(">")[0].split("=")[0].split("<")[0].strip()
                for req in tomllib.loads((SDK / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert declared == set(THIRD_PARTY.values())
    imported = set()
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    outside = imported - set(sys.stdlib_module_names) - set(THIRD_PARTY) - {"__future__", "yieldmeter_sdk"}
    assert not outside, f"the SDK imports {outside}: neither the standard library nor a declared dependency"
