"""The price job's Java functions (jobs/udf), run offline through their main methods: no broker,
no Flink cluster. The jar is the one the job runs (jobs/common.udf_jar, with genai-prices' model
rules bundled), on the classpath of this PyFlink's jars."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import DEV_LIB, PROJECT_ROOT, make_settings



@functools.cache  # one build per test session (starting the Flink environment's Python takes seconds)
def udf_classpath() -> str:
    from yieldmeter.pipeline_jobs import export_model_rules

    folder = Path(tempfile.mkdtemp(prefix="yieldmeter-udf-test-"))
    python = str(make_settings(folder).flink_python_path)
    rules = export_model_rules(folder / "model_rules.json")
    connector = next((DEV_LIB / "flink").glob("flink-sql-connector-kafka-*.jar"))
    build = ("import sys, pathlib, pyflink; sys.path.insert(0, 'jobs'); import common; "
             "print(common.udf_jar(sys.argv[1], sys.argv[2])); print(pathlib.Path(pyflink.__file__).parent / 'lib')")  # fmt: skip
    jar, flink_lib = subprocess.run([python, "-c", build, str(rules), connector.as_uri()], cwd=PROJECT_ROOT,
                                    capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    return f"{jar}:{flink_lib}/*"


def run_main(classpath: str, main: str, lines: list[str], *args: str) -> list[str]:
    """dev.yieldmeter.flink.<main> with ``lines`` on stdin; its output lines."""
    out = subprocess.run(["java", "-cp", classpath, f"dev.yieldmeter.flink.{main}", *args],
                         input="".join(f"{line}\n" for line in lines), capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.splitlines()
