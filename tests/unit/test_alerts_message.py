"""Block Kit messages: structure, Slack's limits, the resolved variant."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from yieldmeter.alerts.config import build_config
from yieldmeter.alerts.engine import Evaluation, _notice, plan
from yieldmeter.alerts.model import Finding, Severity
from tests.block_kit import payload_problems
from yieldmeter.alerts.slack import build_message

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 10, 15, 7, tzinfo=timezone.utc)
CONFIG = build_config({}, "test")


def notice(title="Spend spike: acme / support", query="SELECT 1", details=None, now=NOW, previous=None, found=True):
    f = Finding(
        rule="spend_spike", entity={"org": "acme", "team": "support"}, severity=Severity.CRITICAL, title=title,
        value=Decimal("61"), baseline=Decimal("10"), threshold=Decimal("15.19"), unit="USD/hour",
        observed_at=datetime(2025, 3, 10, 14, tzinfo=timezone.utc), query=query,
        summary="*$61.00* spent against *$10.00*", details=details or {"Baseline": "median of 4 weeks"},
    )
    opened = {previous.incident_key: previous} if previous else {}
    [decision] = plan(Evaluation([f] if found else [], {"spend_spike"}), opened, CONFIG, now)
    return _notice(decision, CONFIG, now)


def test_message_carries_the_numbers_and_is_valid_block_kit():
    payload = build_message(notice())
    assert payload_problems(payload) == []
    blocks = payload["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context", "section"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": ":rotating_light: Spend spike: acme / support", "emoji": True}
    fields = [f["text"] for f in blocks[2]["fields"]]
    assert fields[:5] == ["*Value*\n$61.00/hour", "*Baseline*\n$10.00/hour", "*Threshold*\n$15.19/hour",
                          "*Change*\n+510% (×6.1)", "*Severity*\ncritical"]
    context = " ".join(e["text"] for e in blocks[3]["elements"])
    assert "org: *acme*" in context and "2025-03-10 14:00 UTC" in context
    assert "`spend_spike/org=acme/team=support`" in context
    assert blocks[4]["text"]["text"] == "*Investigate*\n```\nSELECT 1\n```"
    assert "$61.00/hour" in payload["text"]


def test_long_content_is_cut_to_slacks_limits():
    payload = build_message(notice(title="x" * 400, query="SELECT " + "a, " * 2000, details={f"d{i}": "v" * 3000 for i in range(20)}))
    assert payload_problems(payload) == []
    assert len(payload["blocks"][0]["text"]["text"]) == 150
    assert len(payload["blocks"][2]["fields"]) == 10
    assert payload["blocks"][4]["text"]["text"].endswith("…\n```")


def test_resolved_variant():
    opened = notice()
    resolved = notice(now=NOW + timedelta(hours=3, minutes=5), previous=opened, found=False)
    payload = build_message(resolved)
    assert payload_problems(payload) == []
    assert payload["blocks"][0]["text"]["text"] == ":white_check_mark: Resolved: Spend spike: acme / support"
    assert "open for 3h 05m" in payload["blocks"][1]["text"]["text"]
    assert [b["type"] for b in payload["blocks"]] == ["header", "section", "context", "section"]


def test_validator_catches_what_slack_rejects():
    assert "blocks: a list of 1-50 blocks is required" in payload_problems({"text": "x", "blocks": []})
    bad = {"text": "x", "blocks": [
        {"type": "header", "text": {"type": "mrkdwn", "text": "*no*"}},
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11},
        {"type": "section"},
        {"type": "context", "elements": []},
        {"type": "image"},
    ]}
    problems = payload_problems(bad)
    assert "blocks[0].text: a text object of type plain_text is required" in problems
    assert "blocks[1].text.text: 1-150 characters required" in problems
    assert "blocks[2].fields: at most 10 fields" in problems
    assert "blocks[3]: a section needs text or fields" in problems
    assert "blocks[4].elements: 1-10 elements required" in problems
    assert "blocks[5].type: 'image' is not used in alert messages" in problems
    assert any("blocks[1]:" in p and "150" in p for p in problems)  # slack_sdk's own validator agrees
