"""A resolved alert closes its incident: what still waits for approval is withdrawn, shown, audited (issue 19)."""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import (
    ActionEvent,
    ActionState,
    AuditRecord,
    DeadLetter,
    Incident,
    IncidentState,
    RawMail,
    Record,
    SourceKind,
)
from schemas.topics import ACTIONS, APPROVALS, AUDIT, DEAD_LETTER, INCIDENTS, RAW_MAIL
from tests.integration.flow.approval_helpers import wait_until_the_worker_waits
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader
from tests.integration.flow.test_approval_updates_the_slack_message import wait_for_call
from tests.support.approval_keys import signed_decision
from tests.support.loopback import serve
from tests.unit.executors.notify.notify_helpers import BOT_TOKEN, SlackApiStandIn


def resolved_copy(firing: bytes) -> bytes:
    """The same DCE 5 digest with the alert under the 已恢复 (resolved) heading instead of 告警中 (firing)."""
    msg = email.message_from_bytes(firing, policy=email.policy.default)
    html = msg.get_content()  # type: ignore[attr-defined]
    assert ">告警中</h3>" in html
    msg.set_content(html.replace(">告警中</h3>", ">已恢复</h3>"), subtype="html", charset="utf-8",  # type: ignore[attr-defined]
                    cte="quoted-printable")
    return msg.as_bytes()


def send_mail(publisher: KafkaPublisher, tenant: str, raw: bytes) -> None:
    mail = RawMail(tenant=tenant, message_id=f"<{uuid.uuid4().hex}@t>", mailbox="alerts@example.test",
                   source=SourceKind.IMAP, received_at=datetime.now(UTC), raw=raw)
    publisher.publish_sync(RAW_MAIL, f"{tenant}:m", mail)


def of_action(records: list[Record], action_id: str) -> list[ActionEvent]:
    return [r for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def test_a_resolved_alert_resolves_the_incident_and_withdraws_what_awaits_approval(
    broker: object, codec: Codec, samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = f"r{uuid.uuid4().hex[:6]}"
    firing = (samples_dir / "jenkins_restart.eml").read_bytes()
    standin = SlackApiStandIn()
    with serve(standin.app(), "slack-standin") as base:
        env = f"RCAFLOW_NOTIFY__TENANTS__{tenant.upper()}__SLACK__"
        monkeypatch.setenv(f"{env}TOKEN", BOT_TOKEN)
        monkeypatch.setenv(f"{env}CHANNEL", "C0123")
        monkeypatch.setenv(f"{env}API_BASE", f"{base}/api")
        monkeypatch.setenv("RCAFLOW_APPROVALS__APPROVERS", json.dumps({tenant: ["slack:U1"]}))
        with stack_for(broker.bootstrap, tmp_path) as stack:  # type: ignore[attr-defined]
            prefix = stack.settings.kafka.topic_prefix
            publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
            incidents = TopicReader(stack.bootstrap, codec, INCIDENTS, prefix, stack.check)
            actions = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, stack.check)
            audit = TopicReader(stack.bootstrap, codec, AUDIT, prefix, stack.check)
            dead = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, stack.check)

            # 1. The alert fires: an incident opens and the high-risk restart waits for a person.
            send_mail(publisher, tenant, firing)
            _, posted = wait_for_call(standin, lambda c: c[0] == "chat.postMessage", stack.check,
                                      "the first response")
            (value,) = [element["value"] for block in posted["blocks"] if block["type"] == "actions"
                        for element in block["elements"] if element.get("action_id") == "rcaflow_approve"]
            action_id = value.partition("|")[2]
            wait_until_the_worker_waits(stack, f"{tenant}:{action_id}")

            # 2. The same alert resolves: the incident says so, by what and when.
            send_mail(publisher, tenant, resolved_copy(firing))
            incidents.wait_for(lambda rs: any(isinstance(r, Incident) and r.state is IncidentState.RESOLVED
                                              for r in rs), what="the resolved incident")
            opened = [r for r in incidents.records if isinstance(r, Incident) and r.count == 1]
            resolved = [r for r in incidents.records if isinstance(r, Incident) and r.state is IncidentState.RESOLVED]
            assert len(opened) == 1 and len(resolved) == 1
            assert resolved[0].incident_id == opened[0].incident_id
            assert resolved[0].resolved_at is not None
            assert resolved[0].resolved_by is not None and resolved[0].resolved_by.startswith(
                "imap alerts@example.test (event ")

            # 3. What waited is withdrawn (not left to expire), audited, and the chat message says so.
            actions.wait_for(lambda rs: any(a.state is ActionState.WITHDRAWN for a in of_action(rs, action_id)),
                             what="the withdrawn action")
            (withdrawn,) = [a for a in of_action(actions.records, action_id) if a.state is ActionState.WITHDRAWN]
            assert withdrawn.result is not None and "incident resolved" in withdrawn.result
            audit.wait_for(lambda rs: any(isinstance(r, AuditRecord) and r.subject_id == action_id
                                          and r.action.endswith(":withdrawn") for r in rs), what="the audit step")
            (step,) = [r for r in audit.records if isinstance(r, AuditRecord) and r.subject_id == action_id
                       and r.action.endswith(":withdrawn")]
            assert step.actor == "incident-resolved" and step.detail["incident_id"] == resolved[0].incident_id
            _, edited = wait_for_call(standin, lambda c: c[0] == "chat.update" and "*withdrawn*" in json.dumps(c[1]),
                                      stack.check, "the edit showing the withdrawal")
            assert edited["ts"] == "1764072000.000100"  # the stand-in's ts of the first response: edited in place
            assert not [block for block in edited["blocks"] if block["type"] == "actions"], "the buttons are gone"

            # 4. A click that comes later is refused with the reason, and nothing runs.
            publisher.publish_sync(APPROVALS, f"{tenant}:{action_id}", signed_decision(tenant, action_id))
            dead.wait_for(lambda rs: any(isinstance(r, DeadLetter) and r.stage == "approvals"
                                         and r.reason.startswith("withdrawn:") for r in rs), what="the refusal")
            (letter,) = [r for r in dead.records if isinstance(r, DeadLetter) and r.reason.startswith("withdrawn:")]
            assert f"action {action_id} was withdrawn at " in letter.reason
            audit.wait_for(lambda rs: any(isinstance(r, AuditRecord) and r.action == "approval_rejected"
                                          and r.detail.get("reason") == "withdrawn" for r in rs),
                           what="the refusal's audit step")
            actions.poll(2.0)
            states = [a.state for a in of_action(actions.records, action_id)]
            assert states == [ActionState.AWAITING_APPROVAL, ActionState.WITHDRAWN]
            for reader in (incidents, actions, audit, dead):
                reader.close()
            publisher.close_sync()

