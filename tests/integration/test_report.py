"""The HTML report on the real ClickHouse engine (chdb), opened in headless Chromium.

The warehouse is migrated with the real migrations and filled with the fortnight of
tests/integration/fortnight.py. Every number of the report is read from the dbt marts: one test
has none built (every section but the alerts must say how to build them); the others run the
real dbt project first.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_settings
from tests.integration.fortnight import NOW, fill_warehouse
from yieldmeter.report import NOT_BUILT, usd, write_report
from yieldmeter.warehouse import migrate, open_warehouse

pytestmark = pytest.mark.integration

# --- reading what Chromium drew --------------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("Chromium is not installed: `make setup` installs it (apt-get install chromium).")


def browse(report: Path, tmp_path: Path) -> tuple[str, Path]:
    """The DOM after Chromium loaded the file, and a screenshot of it."""
    png = tmp_path / "report.png"
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,4000"]
    dom = subprocess.run([*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = subprocess.run([*base, f"--screenshot={png}", report.as_uri()], capture_output=True, text=True,
                          timeout=120)
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    return dom.stdout, png


class Shapes(html.parser.HTMLParser):
    """Counts the SVG shapes inside each <section id=...> of the rendered DOM."""

    def __init__(self):
        super().__init__()
        self.section, self.counts = None, Counter()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("id")
        elif self.section:
            self.counts[self.section, tag, attrs.get("class")] += 1


def png_colours(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct colours) of an 8-bit RGB/RGBA PNG, decoded with zlib and numpy."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = {}, 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.setdefault(kind, []).append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
    bpp = 3 if colour_type == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(chunks[b"IDAT"])), dtype=np.uint8).reshape(height, -1)
    rows, previous = np.zeros((height, width * bpp), dtype=np.uint8), np.zeros(width * bpp, dtype=np.int32)
    for y in range(height):  # undo the per-row filters (PNG spec, section 9)
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            out = line
        elif kind == 2:
            out = (line + previous) & 0xFF
        elif kind == 1:  # Sub: a running sum per channel
            out = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) & 0xFF
        else:  # Average and Paeth depend on the pixel to the left: one pixel at a time
            out = line.copy()
            for x in range(len(out)):
                a = out[x - bpp] if x >= bpp else 0
                b, c = previous[x], previous[x - bpp] if x >= bpp else 0
                if kind == 3:
                    out[x] = (out[x] + (a + b) // 2) & 0xFF
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    out[x] = (out[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows[y], previous = out, out
    pixels = rows.reshape(-1, bpp)[:, :3].astype(np.uint32)
    return width, height, len(np.unique((pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]))


def assert_self_contained(text: str) -> None:
    assert "<script" not in text.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I), "an external reference"
    assert not re.search(r"""@import|url\(\s*["']?(?:https?:)?//""", text, re.I), "an external stylesheet or font"


# --- the tests ------------------------------------------------------------------------------------


@pytest.fixture
def warehouse(warehouse_url):
    with open_warehouse(warehouse_url) as client:
        migrate(client)
        totals = fill_warehouse(client)
    return warehouse_url, totals


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fortnight with the dbt marts built by a real dbt run (every number of the report is read there)."""
    from yieldmeter.transform import transform

    state = tmp_path_factory.mktemp("report-marts")
    url = f"chdb://{state / 'warehouse'}"
    with open_warehouse(url) as client:
        migrate(client)
        totals = fill_warehouse(client)
    run = transform(make_settings(state, clickhouse_url=url),
                    ["run", "--select", "+value_metrics_daily +model_overkill +tokenmaxxing_signals"])
    assert run.success, run.failures()
    return url, totals


def test_report_without_the_marts_says_how_to_build_them(warehouse, tmp_path):
    url, _ = warehouse
    with open_warehouse(url) as client:
        text = write_report(client, tmp_path / "report.html", now=NOW).read_text()
    assert_self_contained(text)
    assert "2025-03-03 00:00 – 2025-03-17 00:00 UTC (14 days)" in text
    transform_note = NOT_BUILT.replace("`yieldmeter transform`", "<code>yieldmeter transform</code>")
    # the headline, spend, cost per outcome, value versus volume and overkill all wait for the marts
    assert text.count(transform_note) >= 9
    assert "Spend spike: globex / support-us" in text  # the alerts are the alert engine's own table


def test_report_from_the_marts_renders_in_chromium(built, tmp_path):
    url, totals = built
    with open_warehouse(url) as client:
        path = write_report(client, tmp_path / "report.html", now=NOW)
        # over two weeks, spend is drawn per day: the same total, fewer points
        daily = write_report(client, tmp_path / "daily.html", now=NOW + timedelta(days=10)).read_text()
    assert "Peak day:" in daily and usd(totals["cost"]) in daily and "(24 days)" in daily
    text = path.read_text()
    assert_self_contained(text)
    assert 10_000 < path.stat().st_size < 300_000
    assert NOT_BUILT.split(":")[0] not in text  # every section has its data

    # the headline is exact: Decimal from the calls to the page
    assert usd(totals["cost"]) in text and f"{totals['calls']:,}" in text
    assert "2025-03-03 00:00 – 2025-03-17 00:00 UTC (14 days)" in text
    assert f"{totals['unpriced']:,} of {totals['calls']:,} calls" in text  # the unpriced warning
    # with unpriced calls the cost per outcome is unknown, not low (the marts' policy)
    assert f"unknown: {totals['unpriced']:,} unpriced calls" in text
    assert "no successful outcome" in text  # the doc-summarizer's spend bought nothing

    dom, png = browse(path, tmp_path)
    shapes = Shapes()
    shapes.feed(dom)
    counts = shapes.counts
    assert counts["spend", "path", "area"] >= 5  # one stacked area per team
    assert counts["cost-per-outcome", "rect", "bar"] >= 5
    assert counts["value-volume", "circle", "dot"] >= 30  # one point per user and app
    assert counts["alerts", "tr", None] == 4  # header + three incidents (latest state of each)
    assert "Spend spike: globex / support-us" in dom
    assert shapes.counts["value-volume", "g", "flagged"] >= 1
    assert "acme-platform-u7" in dom  # the planted tokenmaxxer is labelled
    assert shapes.counts["overkill", "rect", "bar"] >= 1
    assert "claude-opus-4 → claude-3-5-haiku" in dom

    width, height, colours = png_colours(png)
    assert (width, height) == (1280, 4000)
    assert png.stat().st_size > 50_000 and colours > 50, (png.stat().st_size, colours)
    shutil.copy(png, Path(tmp_path.parent / "report-marts.png"))


def test_cli_writes_the_report(warehouse, tmp_path):
    url, totals = warehouse
    out = tmp_path / "out" / "report.html"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "YIELDMETER_STATE_DIR": str(tmp_path / "state"), "YIELDMETER_CLICKHOUSE_URL": url}
    done = subprocess.run([sys.executable, "-m", "yieldmeter", "report", "--out", str(out), "--days", "7"],
                          capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    # --days 7 up to the newest data: the second week only
    assert "report for 2025-03-10 00:00 – 2025-03-17 00:00 UTC (7 days)" in done.stdout
    assert "run `yieldmeter transform`" in done.stdout  # the marts are not built here
    assert out.exists() and usd(totals["cost"]) not in out.read_text()  # a week is not the fortnight


def test_cli_on_a_warehouse_without_tables_says_what_to_do(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "YIELDMETER_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "yieldmeter", "report"], capture_output=True, text=True, env=env,
                          timeout=180)
    assert done.returncode == 1 and "run `yieldmeter migrate` first" in done.stdout, done.stdout + done.stderr


def test_report_of_an_empty_warehouse_says_so(warehouse_url, tmp_path):
    with open_warehouse(warehouse_url) as client:
        migrate(client)
        text = write_report(client, tmp_path / "report.html", now=NOW, days=7).read_text()
    assert "2025-03-10 00:00 – 2025-03-17 00:00 UTC (7 days)" in text
    assert "No alert fired in this period." in text and "yieldmeter transform" in text
