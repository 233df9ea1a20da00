"""The first-response stage against the Slack Web API and DingTalk robot stand-ins."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from executors.approvals import LinkSigner
from executors.notify import ApprovalChannel, MessageRef, RateLimiter
from executors.notify.dingtalk import DingTalkChannel
from executors.notify.slack import SlackChannel
from schemas.records import ActionEvent, ActionState, Engine, RcaResult, Risk
from streams.notify.channels import build_channels
from streams.notify.notifier import NotificationRef, Notifier, NotifyStageError
from streams.settings import NotifySettings
from tests.unit.executors.notify.notify_helpers import (
    BOT_TOKEN,
    NOW,
    ROBOT_SECRET,
    ROBOT_TOKEN,
    DingTalkRobotStandIn,
    SlackApiStandIn,
    actions,
    rca,
)

SIGNER = LinkSigner(SecretStr("k" * 32))
BASE = "https://rcaflow.example"


class JsonTable(dict[str, Any]):
    """Stores what a Faust table with the json serializer would give back: a copy through JSON."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, json.loads(json.dumps(value)))


def asgi(app: Any, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def slack(standin: SlackApiStandIn) -> SlackChannel:
    return SlackChannel(asgi(standin.app(), "https://slack.com"), token=SecretStr(BOT_TOKEN), channel="C0123")


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def dingtalk(standin: DingTalkRobotStandIn, clock: Clock) -> DingTalkChannel:
    return DingTalkChannel(
        asgi(standin.app(), "https://oapi.dingtalk.com"),
        webhook_url=SecretStr(f"https://oapi.dingtalk.com/robot/send?access_token={ROBOT_TOKEN}"),
        secret=SecretStr(ROBOT_SECRET), limiter=RateLimiter(20, 60.0, clock=clock, sleep=clock.sleep),
        clock_ms=lambda: int(clock() * 1000))


def llm(diagnosis: str = "vmstorage disk is full; the WAL fsyncs stall") -> RcaResult:
    return rca(diagnosis).model_copy(update={"engine": Engine.LLM, "confidence": 0.9,
                                             "produced_at": NOW + timedelta(minutes=1)})


def new_action(action_id: str = "act-3") -> ActionEvent:
    return ActionEvent(tenant="acme", action_id=action_id, incident_id="inc-1", alert_class="etcd_latency",
                       name="delete stuck etcd pod", tool="k8s", operation="delete_pod",
                       params={"namespace": "kube-system", "pod": "etcd-0"}, risk=Risk.HIGH,
                       state=ActionState.AWAITING_APPROVAL, at=NOW + timedelta(minutes=1),
                       expires_at=NOW + timedelta(minutes=31))


def handle(notifier: Notifier, result: RcaResult, acts: list[ActionEvent]) -> NotificationRef | None:
    return asyncio.run(notifier.handle(result, acts))


def block_texts(body: dict[str, Any]) -> str:
    return json.dumps(body["blocks"], ensure_ascii=False)


@pytest.fixture
def standin() -> SlackApiStandIn:
    return SlackApiStandIn()


@pytest.fixture
def store() -> JsonTable:
    return JsonTable()


@pytest.fixture
def notifier(standin: SlackApiStandIn, store: JsonTable) -> Iterator[Notifier]:
    yield Notifier({"acme": {"slack": slack(standin)}}, store, link_signer=SIGNER, public_base_url=BASE,
                   clock=lambda: NOW)


def test_the_policy_result_posts_the_first_response_with_approval_controls(
        notifier: Notifier, standin: SlackApiStandIn, store: JsonTable) -> None:
    ref = handle(notifier, rca(), actions())
    assert ref is not None and ref.posted == ("slack",)
    assert ref.messages["slack"] == MessageRef("slack", "C0123", "1764072000.000100")
    [(method, body)] = standin.calls
    assert method == "chat.postMessage" and body["channel"] == "C0123"
    blocks = block_texts(body)
    assert "etcd fsync latency is high" in blocks and "rcaflow_approve" in blocks
    assert f"{BASE}/approvals/link/v1." in blocks  # the signed Details link of the awaiting action
    assert "act-1" in store["acme:inc-1"]["channels"]["slack"]["offered"]


def test_a_redelivered_result_sends_nothing(notifier: Notifier, standin: SlackApiStandIn) -> None:
    handle(notifier, rca(), actions())
    again = handle(notifier, rca(), actions())
    assert again is not None and again.unchanged == ("slack",) and not again.posted
    assert [m for m, _ in standin.calls] == ["chat.postMessage"]


def test_the_llm_result_updates_the_same_message_and_keeps_the_actions(
        notifier: Notifier, standin: SlackApiStandIn) -> None:
    handle(notifier, rca(), actions())
    ref = handle(notifier, llm(), [])
    assert ref is not None and ref.updated == ("slack",)
    method, body = standin.calls[-1]
    assert method == "chat.update" and body["ts"] == "1764072000.000100" and body["channel"] == "C0123"
    blocks = block_texts(body)
    assert "vmstorage disk is full" in blocks and "(llm)" in blocks
    # The LLM stage decided no actions, yet the approval buttons of the policy's action stay.
    assert "rcaflow_approve" in blocks and "collect diagnostics" in blocks


def test_a_later_action_state_replaces_the_earlier_one(notifier: Notifier, standin: SlackApiStandIn) -> None:
    handle(notifier, rca(), actions())
    decided = actions()[0].model_copy(update={"state": ActionState.APPROVED, "at": NOW + timedelta(minutes=2),
                                              "result": "approved by slack:U1 via slack"})
    handle(notifier, llm(), [decided])
    blocks = block_texts(standin.calls[-1][1])
    assert "rcaflow_approve" not in blocks and "approved by slack:U1" in blocks


def test_a_policy_result_never_overwrites_the_llm_diagnosis(notifier: Notifier, standin: SlackApiStandIn) -> None:
    handle(notifier, rca(), actions())
    handle(notifier, llm(), [])
    late = handle(notifier, rca("re-triaged by the rules"), actions())
    assert late is not None and late.unchanged == ("slack",)
    assert [m for m, _ in standin.calls] == ["chat.postMessage", "chat.update"]


def test_an_llm_result_without_a_first_message_posts_one(notifier: Notifier, standin: SlackApiStandIn) -> None:
    ref = handle(notifier, llm(), actions())
    assert ref is not None and ref.posted == ("slack",)
    assert standin.calls[0][0] == "chat.postMessage"


def test_a_tenant_without_channels_is_not_notified(notifier: Notifier, standin: SlackApiStandIn) -> None:
    other = rca().model_copy(update={"tenant": "other"})
    assert handle(notifier, other, []) is None
    assert standin.calls == []


def test_dingtalk_gets_a_card_then_follow_ups_and_a_new_card_for_new_approvals(store: JsonTable) -> None:
    clock = Clock()
    robot = DingTalkRobotStandIn(clock=clock)
    notifier = Notifier({"acme": {"dingtalk": dingtalk(robot, clock)}}, store, link_signer=SIGNER,
                        public_base_url=BASE, clock=lambda: NOW)
    handle(notifier, rca(), actions())
    handle(notifier, llm(), [])
    handle(notifier, llm(), [new_action()])
    first, follow_up, card = robot.received
    assert first["msgtype"] == "actionCard"
    assert first["actionCard"]["btns"][0]["actionURL"].startswith(f"{BASE}/approvals/link/v1.")
    assert follow_up["msgtype"] == "markdown" and "更新 update" in follow_up["markdown"]["text"]
    assert card["msgtype"] == "actionCard" and len(card["actionCard"]["btns"]) == 2
    assert "vmstorage disk is full" in card["actionCard"]["text"]


def test_one_failing_channel_does_not_stop_the_other_and_a_retry_sends_only_the_rest(store: JsonTable) -> None:
    clock = Clock()
    robot = DingTalkRobotStandIn(clock=clock)
    broken = SlackApiStandIn(error="channel_not_found")
    channels: dict[str, ApprovalChannel] = {"slack": slack(broken), "dingtalk": dingtalk(robot, clock)}
    notifier = Notifier({"acme": channels}, store, clock=lambda: NOW)
    with pytest.raises(NotifyStageError, match="channel_not_found") as caught:
        handle(notifier, rca(), actions())
    assert not caught.value.retriable and set(caught.value.failures) == {"slack"}
    assert len(robot.received) == 1
    broken.error = None
    ref = handle(notifier, rca(), actions())
    assert ref is not None and ref.posted == ("slack",) and ref.unchanged == ("dingtalk",)
    assert len(robot.received) == 1


def test_a_rate_limited_channel_is_retriable_after_its_wait(store: JsonTable) -> None:
    notifier = Notifier({"acme": {"slack": slack(SlackApiStandIn(throttled=True))}}, store)
    with pytest.raises(NotifyStageError) as caught:
        handle(notifier, rca(), actions())
    assert caught.value.retriable and caught.value.retry_after == 3.0
    assert "acme:inc-1" in store and store["acme:inc-1"]["channels"] == {}


def test_settings_build_the_tenants_channels_and_keep_secrets_out_of_reprs(standin: SlackApiStandIn,
                                                                           store: JsonTable) -> None:
    settings = NotifySettings.model_validate({"tenants": {
        "acme": {"slack": {"token": BOT_TOKEN, "channel": "C0123", "api_base": "https://slack.com/api"}},
        "beta": {"dingtalk": {"webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=t",
                              "secret": "SECx"}},
        "gamma": {},
    }})
    assert BOT_TOKEN not in repr(settings) and "SECx" not in repr(settings)
    channels = build_channels(settings, asgi(standin.app(), "https://slack.com"))
    assert {t: sorted(c) for t, c in channels.items()} == {"acme": ["slack"], "beta": ["dingtalk"]}
    ref = handle(Notifier(channels, store), rca(), actions())
    assert ref is not None and ref.posted == ("slack",) and standin.calls[0][0] == "chat.postMessage"


def test_a_channel_name_that_is_not_a_slack_channel_is_refused() -> None:
    with pytest.raises(ValidationError):
        NotifySettings.model_validate({"tenants": {"acme": {"slack": {"token": "x", "channel": "C1?x=<y>"}}}})


def test_the_first_response_links_the_runbook_of_the_class(standin: SlackApiStandIn, store: JsonTable) -> None:
    from policies.runbooks import runbook_link

    notifier = Notifier({"acme": {"slack": slack(standin)}}, store, clock=lambda: NOW,
                        runbook=lambda cls: runbook_link(cls, "https://git.example.com/ops/rcaflow/docs/runbooks"))
    handle(notifier, rca(), actions())
    [(_method, body)] = standin.calls
    assert "Runbook: https://git.example.com/ops/rcaflow/docs/runbooks/etcd_latency.md" in block_texts(body)


def test_an_unclassified_incident_gets_no_runbook_line(standin: SlackApiStandIn, store: JsonTable) -> None:
    notifier = Notifier({"acme": {"slack": slack(standin)}}, store, clock=lambda: NOW, runbook=lambda cls: cls)
    handle(notifier, rca().model_copy(update={"alert_class": "unclassified"}), actions())
    [(_method, body)] = standin.calls
    assert "Runbook:" not in block_texts(body)
