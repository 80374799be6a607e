"""A test oracle for alert messages: is a webhook payload valid Block Kit, as Slack takes it?"""

from __future__ import annotations

from slack_sdk.models.blocks import Block

from yieldmeter.alerts.slack import FIELD_MAX, FIELDS_MAX, HEADER_MAX, SECTION_MAX


def payload_problems(payload: dict) -> list[str]:
    """What makes a webhook payload invalid Block Kit (empty: valid). Structure checked here,
    then every block is re-parsed by slack_sdk's models and run through their validators."""
    problems = []
    if not isinstance(payload.get("text"), str) or not payload["text"]:
        problems.append("text: a non-empty fallback text is required")
    blocks = payload.get("blocks")
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return problems + ["blocks: a list of 1-50 blocks is required"]

    def text_object(obj, where: str, types=("plain_text", "mrkdwn"), limit=SECTION_MAX) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in types:
            problems.append(f"{where}: a text object of type {' or '.join(types)} is required")
        elif not isinstance(obj.get("text"), str) or not 0 < len(obj["text"]) <= limit:
            problems.append(f"{where}.text: 1-{limit} characters required")

    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "header":
            text_object(block.get("text"), f"blocks[{i}].text", ("plain_text",), HEADER_MAX)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"blocks[{i}]: a section needs text or fields")
            if "text" in block:
                text_object(block["text"], f"blocks[{i}].text")
            fields = block.get("fields", [])
            if len(fields) > FIELDS_MAX:
                problems.append(f"blocks[{i}].fields: at most {FIELDS_MAX} fields")
            for j, item in enumerate(fields):
                text_object(item, f"blocks[{i}].fields[{j}]", limit=FIELD_MAX)
        elif kind == "context":
            elements = block.get("elements", [])
            if not 0 < len(elements) <= 10:
                problems.append(f"blocks[{i}].elements: 1-10 elements required")
            for j, item in enumerate(elements):
                text_object(item, f"blocks[{i}].elements[{j}]")
        else:
            problems.append(f"blocks[{i}].type: {kind!r} is not used in alert messages")
            continue
        try:
            parsed = Block.parse(block)
            parsed.validate_json()
            if parsed.to_dict() != block:
                problems.append(f"blocks[{i}]: does not round-trip through slack_sdk's model")
        except Exception as error:
            problems.append(f"blocks[{i}]: {error}")
    return problems
