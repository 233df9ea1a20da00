"""A decision on an action shows on the incident's message: Slack edits it, DingTalk gets one short follow-up."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from schemas.records import ActionEvent, ActionState, Risk
from streams.notify.notifier import NotificationRef, Notifier
from streams.notify.requests import (
    PRUNE_TICK,
    NotifyRequestError,
    PruneTick,
    decided_request,
    parse_request,
    result_request,
)
from tests.unit.executors.notify.notify_helpers import NOW, DingTalkRobotStandIn, SlackApiStandIn, actions, rca
from tests.unit.streams.notify.test_notifier import BASE, SIGNER, Clock, JsonTable, dingtalk, handle, llm, slack


def decided(state: ActionState, result: str, action_id: str = "act-1", incident_id: str = "inc-1") -> ActionEvent:
    waiting = actions()[0]
    return waiting.model_copy(update={"state": state, "result": result, "action_id": action_id,
                                      "incident_id": incident_id, "at": NOW + timedelta(minutes=2)})


def show(notifier: Notifier, action: ActionEvent) -> NotificationRef | None:
    return asyncio.run(notifier.decided(action))


def slack_notifier(standin: SlackApiStandIn, store: JsonTable) -> Notifier:
    return Notifier({"acme": {"slack": slack(standin)}}, store, link_signer=SIGNER, public_base_url=BASE,
                    clock=lambda: NOW)


def test_slack_message_is_edited_to_show_who_approved_what_and_when_without_its_buttons() -> None:
    standin, store = SlackApiStandIn(), JsonTable()
    notifier = slack_notifier(standin, store)
    handle(notifier, rca(), actions())
    posted = standin.calls[0][1]
    assert any(b["type"] == "actions" for b in posted["blocks"])

    ref = show(notifier, decided(ActionState.APPROVED, "approved by slack:U1 via slack"))

    assert ref is not None and ref.updated == ("slack",)
    method, body = standin.calls[-1]
    assert method == "chat.update" and body["channel"] == "C0123" and body["ts"] == "1764072000.000100"
    text = json.dumps(body["blocks"], ensure_ascii=False)
    assert "*approved* at 2026-11-25 12:02 UTC: approved by slack:U1 via slack" in text
    assert "restart etcd member" in text and "etcd fsync latency is high" in text  # the rest of the message stays
    assert not [b for b in body["blocks"] if b["type"] == "actions"]


def test_a_redelivered_decision_edits_nothing_and_the_llm_update_keeps_the_decision() -> None:
    standin, store = SlackApiStandIn(), JsonTable()
    notifier = slack_notifier(standin, store)
    handle(notifier, rca(), actions())
    rejected = decided(ActionState.REJECTED, "rejected by slack:U2 via slack: not during business hours")
    show(notifier, rejected)
    calls = len(standin.calls)
    again = show(notifier, rejected)
    assert again is not None and again.unchanged == ("slack",) and len(standin.calls) == calls

    handle(notifier, llm(), [])
    method, body = standin.calls[-1]
    text = json.dumps(body["blocks"], ensure_ascii=False)
    assert method == "chat.update" and "vmstorage disk is full" in text
    assert "*rejected* at 2026-11-25 12:02 UTC: rejected by slack:U2" in text
    assert not [b for b in body["blocks"] if b["type"] == "actions"]


def test_an_expired_approval_shows_as_expired() -> None:
    standin, store = SlackApiStandIn(), JsonTable()
    notifier = slack_notifier(standin, store)
    handle(notifier, rca(), actions())
    show(notifier, decided(ActionState.EXPIRED, "nobody decided before 2026-11-25T12:30:00+00:00"))
    text = json.dumps(standin.calls[-1][1]["blocks"], ensure_ascii=False)
    assert "*expired* at 2026-11-25 12:02 UTC: nobody decided before" in text


def test_dingtalk_gets_one_short_follow_up_naming_only_the_decided_action() -> None:
    clock = Clock()
    robot = DingTalkRobotStandIn(clock=clock)
    notifier = Notifier({"acme": {"dingtalk": dingtalk(robot, clock)}}, JsonTable(), link_signer=SIGNER,
                        public_base_url=BASE, clock=lambda: NOW)
    handle(notifier, rca(), actions())
    rejected = decided(ActionState.REJECTED, "rejected by link:3f2a9c1b via link")
    show(notifier, rejected)
    show(notifier, rejected)  # redelivered: no second follow-up

    card, follow_up = robot.received
    assert card["msgtype"] == "actionCard"
    text = follow_up["markdown"]["text"]
    assert follow_up["msgtype"] == "markdown"
    assert "restart etcd member" in text and "rejected 2026-11-25 12:02 UTC: rejected by link:3f2a9c1b" in text
    assert "collect diagnostics" not in text  # short: only what changed


def test_dingtalk_decisions_wait_for_the_robots_20_per_minute_instead_of_being_refused() -> None:
    clock = Clock()
    robot = DingTalkRobotStandIn(clock=clock)
    notifier = Notifier({"acme": {"dingtalk": dingtalk(robot, clock)}}, JsonTable(), clock=lambda: NOW)
    for n in range(15):
        incident = f"inc-{n}"
        handle(notifier, rca().model_copy(update={"incident_id": incident}), [
            a.model_copy(update={"incident_id": incident}) for a in actions()])
        show(notifier, decided(ActionState.APPROVED, "approved by slack:U1 via slack", incident_id=incident))
    assert len(robot.received) == 30 and robot.refused == 0
    assert clock() - NOW.timestamp() >= 60.0  # the limiter spread them out


def test_nothing_is_sent_for_an_incident_without_a_message_or_a_tenant_without_channels() -> None:
    standin, store = SlackApiStandIn(), JsonTable()
    notifier = slack_notifier(standin, store)
    assert show(notifier, decided(ActionState.APPROVED, "approved by slack:U1 via slack")) is None
    assert show(notifier, decided(ActionState.APPROVED, "x").model_copy(update={"tenant": "other"})) is None
    assert standin.calls == []


def test_notify_requests_round_trip_through_the_worker_topic() -> None:
    acts = actions()
    result, carried = parse_request(result_request(rca(), acts))  # type: ignore[misc]
    assert result.incident_id == "inc-1" and [a.action_id for a in carried] == ["act-1", "act-2"]
    action = decided(ActionState.APPROVED, "approved by slack:U1 via slack")
    assert parse_request(decided_request(action)) == action
    assert isinstance(parse_request(PRUNE_TICK), PruneTick)



def test_a_record_that_is_no_notify_request_is_refused_not_guessed() -> None:
    for raw in (b"not json", b"[1]", b'{"decided": {"tenant": "acme"}}', b'{"other": 1}'):
        with pytest.raises(NotifyRequestError):
            parse_request(raw)


def test_an_outcome_that_arrives_before_the_first_response_is_in_it() -> None:
    standin, store = SlackApiStandIn(), JsonTable()
    notifier = slack_notifier(standin, store)
    # The executor can finish an auto-approved action before the worker's first response is out.
    early = show(notifier, decided(ActionState.SUCCEEDED, "dry run: would collect diagnostics"))
    assert early is None and standin.calls == []

    handle(notifier, rca(), actions())

    method, body = standin.calls[-1]
    assert method == "chat.postMessage"
    assert "*dry-run*: dry run: would collect diagnostics" in json.dumps(body["blocks"], ensure_ascii=False)


def test_a_failed_action_and_its_rollback_show_on_the_message() -> None:
    standin, store = SlackApiStandIn(), JsonTable()
    notifier = slack_notifier(standin, store)
    handle(notifier, rca(), actions())
    show(notifier, decided(ActionState.FAILED, "not confirmed within 300 s: 1 out of 2 new replicas updated"))
    rollback = decided(ActionState.SUCCEEDED, "undo the restart", action_id="rb-1").model_copy(
        update={"name": "restart etcd member:rollback", "rollback_of": "act-1", "at": NOW + timedelta(minutes=3)})
    show(notifier, rollback)
    text = json.dumps(standin.calls[-1][1]["blocks"], ensure_ascii=False)
    assert "*failed*: not confirmed within 300 s" in text
    assert "restart etcd member:rollback" in text and "*dry-run*: undo the restart" in text


def test_dingtalk_hears_of_failures_and_approved_runs_but_not_of_every_routine_success() -> None:
    clock = Clock()
    robot = DingTalkRobotStandIn(clock=clock)
    notifier = Notifier({"acme": {"dingtalk": dingtalk(robot, clock)}}, JsonTable(), link_signer=SIGNER,
                        public_base_url=BASE, clock=lambda: NOW)
    handle(notifier, rca(), actions())
    routine = actions()[1]
    assert routine.risk is not Risk.HIGH
    show(notifier, routine.model_copy(update={"state": ActionState.SUCCEEDED, "result": "collected",
                                              "at": NOW + timedelta(minutes=1)}))
    assert len(robot.received) == 1  # the first response only
    show(notifier, routine.model_copy(update={"state": ActionState.FAILED, "result": "pods not found",
                                              "at": NOW + timedelta(minutes=2)}))
    show(notifier, decided(ActionState.SUCCEEDED, "restarted"))  # high risk, approved by a human
    assert len(robot.received) == 3
    assert "failed" in robot.received[1]["markdown"]["text"]
    assert "dry-run: restarted" in robot.received[2]["markdown"]["text"]  # a dry run, never "succeeded"
