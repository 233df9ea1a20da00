"""One chat message per incident group: later members answer in its thread (Slack) or stay in it (DingTalk)."""

from __future__ import annotations

import asyncio
import json

from executors.notify.slack import SlackChannel
from schemas.records import ActionEvent, RcaResult
from streams.notify.notifier import Notifier
from tests.unit.executors.notify.notify_helpers import NOW, DingTalkRobotStandIn, SlackApiStandIn, actions, rca
from tests.unit.streams.notify.test_notifier import Clock, JsonTable, dingtalk, slack


def member(n: int, group: str = "inc-1", reason: str = "causal chain remote-write: a → b") -> RcaResult:
    """The n-th incident of ``group`` (n = 1: the group's first member, whose id is the group's)."""
    base = rca(f"diagnosis of member {n}")
    incident = base.incident.model_copy(update={"incident_id": f"inc-{n}", "group_id": group,
                                                "group_reason": reason, "root_candidate": "inc-1"})
    return base.model_copy(update={"incident_id": f"inc-{n}", "incident": incident})


def of(result: RcaResult) -> list[ActionEvent]:
    return [a.model_copy(update={"incident_id": result.incident_id, "action_id": f"{a.action_id}-{result.incident_id}"})
            for a in actions()]


def posts(standin: SlackApiStandIn) -> list[dict[str, object]]:
    return [body for name, body in standin.calls if name == "chat.postMessage"]


def test_later_members_reply_in_the_thread_of_the_groups_one_message() -> None:
    standin, store = SlackApiStandIn(), JsonTable()
    notifier = Notifier({"acme": {"slack": slack(standin)}}, store, clock=lambda: NOW)
    for n in range(1, 13):
        asyncio.run(notifier.handle(member(n), of(member(n))))
    top = [p for p in posts(standin) if "thread_ts" not in p]
    replies = [p for p in posts(standin) if "thread_ts" in p]
    assert len(top) == 1, "one top-level message per group"
    assert len(replies) == 11 and {r["thread_ts"] for r in replies} == {"1764072000.000100"}
    assert "diagnosis of member 7" in json.dumps(replies[5]["blocks"], ensure_ascii=False)
    assert "causal chain remote-write" in json.dumps(replies[5]["blocks"], ensure_ascii=False)
    assert "rcaflow_approve" in json.dumps(replies[5]["blocks"]), "a member's own actions stay decidable"
    assert list(store) == ["acme:inc-1"], "one row per group"


def test_a_redelivered_member_result_sends_nothing_and_a_changed_one_edits_its_reply() -> None:
    standin = SlackApiStandIn()
    notifier = Notifier({"acme": {"slack": slack(standin)}}, JsonTable(), clock=lambda: NOW)
    asyncio.run(notifier.handle(member(1), of(member(1))))
    asyncio.run(notifier.handle(member(2), of(member(2))))
    again = asyncio.run(notifier.handle(member(2), of(member(2))))
    assert again is not None and again.unchanged == ("slack",)
    changed = member(2).model_copy(update={"diagnosis": "the LLM's view of member 2"})
    edited = asyncio.run(notifier.handle(changed, []))
    assert edited is not None and edited.updated == ("slack",)
    assert [name for name, _ in standin.calls] == ["chat.postMessage", "chat.postMessage", "chat.update"]


def test_whoever_arrives_first_posts_and_the_groups_first_member_then_replies() -> None:
    standin = SlackApiStandIn()
    notifier = Notifier({"acme": {"slack": slack(standin)}}, JsonTable(), clock=lambda: NOW)
    asyncio.run(notifier.handle(member(3), of(member(3))))  # its analysis was faster
    asyncio.run(notifier.handle(member(1), of(member(1))))
    assert ["thread_ts" in p for p in posts(standin)] == [False, True]


def test_different_groups_get_their_own_message() -> None:
    standin = SlackApiStandIn()
    notifier = Notifier({"acme": {"slack": slack(standin)}}, JsonTable(), clock=lambda: NOW)
    asyncio.run(notifier.handle(member(1), []))
    asyncio.run(notifier.handle(member(2, group="inc-2", reason="first alert of its group"), []))
    assert ["thread_ts" in p for p in posts(standin)] == [False, False]


def test_a_channel_that_cannot_reply_in_a_thread_posts_nothing_for_later_members() -> None:
    clock = Clock()
    robot = DingTalkRobotStandIn(clock)
    notifier = Notifier({"acme": {"dingtalk": dingtalk(robot, clock)}}, JsonTable(), clock=lambda: NOW)
    asyncio.run(notifier.handle(member(1), of(member(1))))
    assert len(robot.received) == 1
    ref = asyncio.run(notifier.handle(member(2), of(member(2))))
    assert ref is not None and ref.unchanged == ("dingtalk",)
    assert len(robot.received) == 1, "no second message in a chat that cannot thread"


def test_slack_thread_reply_is_refused_without_a_parent() -> None:
    from executors.notify import MessageRef, NotifyError

    channel: SlackChannel = slack(SlackApiStandIn())
    try:
        asyncio.run(channel.reply(MessageRef("slack"), member(2), []))
    except NotifyError as exc:
        assert "thread reply needs" in str(exc)
    else:
        raise AssertionError("a reply without a parent message must fail")
