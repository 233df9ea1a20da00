"""The worker posts an incident's first response to Slack and edits it when someone approves and when it ran."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.topics import APPROVALS
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import send_mail_file
from tests.support.approval_keys import signed_decision
from tests.support.loopback import serve
from tests.unit.executors.notify.notify_helpers import BOT_TOKEN, SlackApiStandIn

Call = tuple[str, dict[str, Any]]


def wait_for_call(standin: SlackApiStandIn, match: Callable[[Call], bool], alive: Callable[[], None],
                  what: str, timeout: float = 60.0) -> Call:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        found = [call for call in list(standin.calls) if match(call)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; Slack saw {[name for name, _ in standin.calls]}")


def test_an_approval_edits_the_first_response_to_show_who_approved(
    broker: object, codec: Codec, samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = f"n{uuid.uuid4().hex[:6]}"
    standin = SlackApiStandIn()
    with serve(standin.app(), "slack-standin") as base:
        env = f"RCAFLOW_NOTIFY__TENANTS__{tenant.upper()}__SLACK__"
        monkeypatch.setenv(f"{env}TOKEN", BOT_TOKEN)
        monkeypatch.setenv(f"{env}CHANNEL", "C0123")
        monkeypatch.setenv(f"{env}API_BASE", f"{base}/api")
        monkeypatch.setenv("RCAFLOW_NOTIFY__PRUNE_INTERVAL_S", "0.5")  # prune ticks flow; nothing is a day old
        # The executor re-checks that a human approval came from one of the tenant's approvers.
        monkeypatch.setenv("RCAFLOW_APPROVALS__APPROVERS", json.dumps({tenant: ["slack:U1"]}))
        with stack_for(broker.bootstrap, tmp_path) as stack:  # type: ignore[attr-defined]
            prefix = stack.settings.kafka.topic_prefix
            publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
            send_mail_file(publisher, tenant, samples_dir / "jenkins_restart.eml")

            _, posted = wait_for_call(standin, lambda c: c[0] == "chat.postMessage", stack.check,
                                      "the first response")
            # What a click would carry: the Approve button's value is "tenant|action id".
            (value,) = [element["value"] for block in posted["blocks"] if block["type"] == "actions"
                        for element in block["elements"] if element.get("action_id") == "rcaflow_approve"]
            assert value.startswith(f"{tenant}|")
            action_id = value.partition("|")[2]
            publisher.publish_sync(APPROVALS, f"{tenant}:{action_id}", signed_decision(tenant, action_id))

            _, edited = wait_for_call(
                standin, lambda c: c[0] == "chat.update" and "approved by slack:U1" in json.dumps(c[1]),
                stack.check, "the edit showing the approval")
            assert edited["ts"] == "1764072000.000100" and edited["channel"] == "C0123"
            assert "*approved* at " in json.dumps(edited["blocks"])
            assert not [block for block in edited["blocks"] if block["type"] == "actions"]
            # Then the executor runs it (a dry run by default); the same message says how it ended: never "succeeded".
            _, ran = wait_for_call(
                standin, lambda c: c[0] == "chat.update" and json.dumps(c[1]).count("*dry-run*") >= 2,
                stack.check, "the edit showing both actions finished")
            assert ran["ts"] == "1764072000.000100"
            publisher.close_sync()
