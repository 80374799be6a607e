"""`yieldmeter docs`: the dbt docs site of the value models, generated on the simulated warehouse,
describes every model and column, and loads in headless Chromium (Debian's chromium package,
installed by `make setup`) with the marts in it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading

import pytest
from typer.testing import CliRunner

from tests.conftest import DEV_LIB
from yieldmeter.cli import app
from yieldmeter.transform import docs_server

from tests.e2e.test_value_models import MARTS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def site(value_warehouse):
    settings = value_warehouse.settings
    env = {"YIELDMETER_STATE_DIR": str(settings.state_path), "YIELDMETER_LIB_DIR": str(DEV_LIB)}
    result = CliRunner().invoke(app, ["docs"], env=env)
    assert result.exit_code == 0, result.output
    target = settings.state_path / "dbt" / "target"
    assert f"site: {target / 'index.html'}" in result.output
    return target


def test_every_model_and_column_is_described(site):
    manifest = json.loads((site / "manifest.json").read_text())
    catalog = json.loads((site / "catalog.json").read_text())  # the columns as they are in ClickHouse
    undescribed = []
    for unique_id, relation in catalog["nodes"].items():
        node = manifest["nodes"][unique_id]
        if not node["description"].strip():
            undescribed.append(unique_id)
        undescribed += [f"{unique_id}.{c}" for c in relation["columns"]
                        if not node["columns"].get(c, {}).get("description", "").strip()]
    assert not undescribed
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert MARTS <= set(models)
    assert all("one row per" in m["description"].lower() for m in models.values())  # the grain, stated
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert {"slack_alerts", "value_report"} <= set(exposures)
    assert "model.yieldmeter.tokenmaxxing_signals" in exposures["value_report"]["depends_on"]["nodes"]


def test_docs_site_loads_in_headless_chromium_with_the_marts(site, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed: `make setup` installs it (apt-get install chromium).")
    server = docs_server(site, port=0)  # what `yieldmeter docs --serve` runs
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/#!/model/model.yieldmeter.tokenmaxxing_signals"
        page = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=20000", "--dump-dom", url],
            capture_output=True, text=True, timeout=180)
    finally:
        server.shutdown()
        server.server_close()
    assert page.returncode == 0, page.stderr[-2000:]
    # what the app rendered from manifest.json and catalog.json, not its own source
    rendered = re.sub(r"<script.*?</script>|<style.*?</style>", "", page.stdout, flags=re.S)
    missing = [mart for mart in MARTS if mart not in rendered]
    assert not missing, f"not in the rendered site: {missing}"
    assert "Robust z-score of the log of the token volume" in rendered  # the model page's column docs
