"""The Flink jobs' helpers that need no Flink: SQL rendering, Kafka options, durations, the
dedup TTL plan edit, and which checkpoint a job resumes from."""

from __future__ import annotations

import argparse
import json
import os
import sys

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.unit

sys.path.insert(0, str(PROJECT_ROOT / "jobs"))
import common  # noqa: E402  jobs/common.py imports only the standard library at module level
import price  # noqa: E402


def args(**values) -> argparse.Namespace:
    return argparse.Namespace(**({"bootstrap": "k:9092", "group_id": "g", "bounded": True, "checkpoint_dir": None,
                                  "fresh": False} | values))  # fmt: skip


def test_statements_split_on_semicolons_outside_literals():
    statements = common.render_sql(
        "price", events_options="'a' = 'x;y'", prices_bootstrap="k:9092", prices_topic="p;q", priced_options="'d' = 'e'",
        dlq_options="'f' = 'g'", price_delay="INTERVAL '1' SECOND", session_lateness="INTERVAL '1' MINUTE",
        watermark_emit="on-event",
    )  # fmt: skip
    assert statements[0].startswith("CREATE TABLE events_src") and "'a' = 'x;y'" in statements[0]
    assert sum(s.startswith("INSERT") for s in statements) == 2
    assert any("'k:9092', 'p;q'" in s for s in statements)  # the literal's semicolon did not split it
    assert not any("--" in s for s in statements)


def test_bounded_sources_stop_at_the_offsets_fixed_at_start():
    job = args(stop_offsets={"ev": {0: 10, 1: 7}})
    options = common.kafka_options(job, "ev", source=True)
    assert "'scan.bounded.specific-offsets' = 'partition:0,offset:10;partition:1,offset:7'" in options
    assert "'scan.startup.mode' = 'group-offsets'" in options
    assert "'scan.bounded.mode' = 'latest-offset'" in common.kafka_options(job, "prices", source=True)
    assert "scan.bounded" not in common.kafka_options(args(bounded=False), "ev", source=True)
    sink = common.kafka_options(job, "out", source=False)
    assert "'sink.delivery-guarantee' = 'exactly-once'" in sink and "'sink.transactional-id-prefix' = 'g-out'" in sink


@pytest.mark.parametrize(("text", "ms"), [("30min", 1_800_000), ("5 s", 5000), ("24h", 86_400_000), ("500ms", 500), ("1d", 86_400_000)])
def test_durations(text, ms):
    assert common.duration_ms(text) == ms


def test_a_bad_duration_says_what_is_expected():
    with pytest.raises(argparse.ArgumentTypeError, match="write e.g. 30min"):
        common.duration_ms("soon")


def test_sql_intervals_are_exact_to_the_millisecond():
    assert common.sql_interval(90_061_001) == "INTERVAL '1 01:01:01.001' DAY TO SECOND(3)"


def test_the_dedup_ttl_goes_on_the_event_id_deduplication_only():
    node = {"type": "stream-exec-deduplicate_1", "isRowtime": False, "state": [{"ttl": "0 ms"}]}
    plan = {"nodes": [node | {"keepLastRow": False}, node | {"keepLastRow": True}, {"type": "stream-exec-temporal-join_1"}]}
    edited = json.loads(price.with_dedup_ttl(json.dumps(plan), 86_400_000))["nodes"]
    assert [n.get("state") for n in edited] == [[{"ttl": "86400000 ms"}], [{"ttl": "0 ms"}], None]


def completed(root, mode: str, job: str, n: int, age: float):
    meta = root / mode / job / f"chk-{n}" / "_metadata"
    meta.parent.mkdir(parents=True)
    meta.write_text("x")
    os.utime(meta, (age, age))
    return meta.parent


def test_a_job_resumes_from_its_newest_checkpoint_and_drops_the_older_ones(tmp_path):
    old = completed(tmp_path, "bounded", "job-a", 3, 1000)
    new = completed(tmp_path, "bounded", "job-b", 7, 2000)
    (tmp_path / "bounded" / "job-c").mkdir()  # a run that never completed a checkpoint
    assert common.latest_checkpoint(args(checkpoint_dir=tmp_path.as_uri())) == new.as_uri()
    assert not old.exists() and not (tmp_path / "bounded" / "job-c").exists() and new.exists()


def test_a_checkpoint_of_the_other_mode_is_not_resumed(tmp_path):
    completed(tmp_path, "continuous", "job-a", 3, 1000)
    with pytest.raises(SystemExit, match="did not finish.*--continuous.*--fresh"):
        common.latest_checkpoint(args(checkpoint_dir=tmp_path.as_uri()))
    assert common.latest_checkpoint(args(checkpoint_dir=tmp_path.as_uri(), fresh=True)) is None
    assert not tmp_path.exists()
