"""Message builders against golden JSON: what Slack and DingTalk users will see, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from executors.notify import MessageRef
from executors.notify import dingtalk as dingtalk_messages
from executors.notify import slack as slack_messages
from schemas.records import ActionState, ApprovalDecision, Decision
from tests.unit.executors.notify.notify_helpers import NOW, actions, rca

GOLDEN = Path(__file__).parent / "golden"
LINKS = {"act-1": "https://rcaflow.example/approvals/link/v1.payload.mac"}


def golden(name: str, message: dict[str, Any]) -> None:
    path = GOLDEN / name
    text = json.dumps(message, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if not path.exists():
        pytest.fail(f"{path} is missing; if the message is right, write it with:\n{text}")
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text)


def decision() -> ApprovalDecision:
    return ApprovalDecision(tenant="acme", action_id="act-1", decision=Decision.APPROVE, approver="slack:U1",
                            channel="slack", decided_at=NOW)


def test_slack_first_response() -> None:
    golden("slack_first_response.json",
           slack_messages.first_response(rca(), actions(), channel="C0123", links=LINKS))


def test_slack_update_rebuilds_the_message_without_buttons_for_decided_actions() -> None:
    decided = [a.model_copy(update={"state": ActionState.APPROVED if a.action_id == "act-1" else a.state,
                                    "result": "approved by slack:U1 via slack" if a.action_id == "act-1"
                                    else a.result}) for a in actions()]
    message = slack_messages.update(rca(), decided, ref=MessageRef("slack", "C0123", "1764072000.000100"))
    golden("slack_update.json", message)
    assert not [b for b in message["blocks"] if b["type"] == "actions"]


def test_slack_mark_decided_replaces_only_that_actions_buttons() -> None:
    original = slack_messages.first_response(rca(), actions(), channel="C0123")["blocks"]
    golden("slack_mark_decided.json", slack_messages.mark_decided(original, actions()[0], decision()))


def test_dingtalk_first_response_is_an_action_card_with_review_links() -> None:
    golden("dingtalk_first_response.json", dingtalk_messages.first_response(rca(), actions(), LINKS))


def test_dingtalk_without_links_is_plain_markdown() -> None:
    message = dingtalk_messages.first_response(rca(), actions())
    assert message["msgtype"] == "markdown"


def test_dingtalk_update() -> None:
    golden("dingtalk_update.json", dingtalk_messages.update(rca(), actions()))


def test_slack_text_cannot_mention_or_link() -> None:
    message = slack_messages.first_response(rca("<!channel> see <https://evil.example|here> & panic"), actions(),
                                            channel="C1")
    text = json.dumps(message)
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text and "&amp; panic" in text


def test_dingtalk_text_cannot_form_links_or_images() -> None:
    message = dingtalk_messages.first_response(rca("see [here](https://evil.example) ![x](https://evil.example/a.png)"),
                                               actions())
    text = message["markdown"]["text"]
    assert "[here](" not in text and "![x](" not in text
    assert "［here］(https://evil.example)" in text
