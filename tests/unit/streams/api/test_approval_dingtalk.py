"""DingTalk decisions arrive only as DingTalk's encrypted event callback, made here by a stand-in of DingTalk."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import unquote_plus

import httpx
import pytest
from pydantic import SecretStr

from executors.approvals import dingtalk_sign
from executors.approvals.dingtalk_event import DingTalkCallbackKeys, open_callback
from schemas.records import ApprovalDecision, Decision
from streams.settings import ApprovalSettings
from tests.support.dingtalk import DingTalkCallbackRequest, DingTalkStandIn
from tests.unit.streams.api.approval_env import DINGTALK, Env, make_env
from tests.unit.streams.approval_helpers import NOW, MemoryPublisher, action


@pytest.fixture
def env() -> Iterator[Env]:
    yield from make_env()


def post(env: Env, request: DingTalkCallbackRequest) -> httpx.Response:
    return env.client.post(request.url(), json=request.body)


def reply(content: str, *, staff: str = "staff1", at: datetime = NOW,
          dingtalk: DingTalkStandIn = DINGTALK) -> DingTalkCallbackRequest:
    return dingtalk.robot_reply(content, staff=staff, at=at)


def test_an_encrypted_reply_publishes_the_decision_and_answers_success_encrypted(env: Env) -> None:
    response = post(env, reply(" 批准 act-1 看过监控了"))
    assert response.status_code == 200, response.text
    assert DINGTALK.open_answer(response.json()) == "success"
    [decision] = env.decisions()
    assert (decision.decision, decision.approver, decision.channel, decision.reason) == (
        Decision.APPROVE, "dingtalk:staff1", "dingtalk", "看过监控了")
    assert decision.claim_id.startswith("dingtalk:")


def test_the_url_check_is_answered_and_decides_nothing(env: Env) -> None:
    response = post(env, DINGTALK.callback({"EventType": "check_url"}, at=NOW))
    assert response.status_code == 200 and DINGTALK.open_answer(response.json()) == "success"
    assert env.publisher.published == []


def test_a_robot_message_signed_only_by_timestamp_is_refused(env: Env) -> None:
    """The old channel: ``sign`` covers the timestamp only, so the body could say anything."""
    ts = int(NOW.timestamp() * 1000)
    body = {"msgtype": "text", "text": {"content": "approve act-1"}, "senderStaffId": "staff1"}
    response = env.client.post("/approvals/dingtalk", json=body, headers={
        "timestamp": str(ts), "sign": unquote_plus(dingtalk_sign("SEC-robot-secret", ts))})
    assert response.status_code == 401 and response.json()["reason"] == "bad_signature"
    assert env.publisher.published == []


def test_a_callback_with_a_wrong_token_is_401(env: Env) -> None:
    forged = DingTalkStandIn(token="not-our-token", aes_key=DINGTALK.aes_key, owner_key=DINGTALK.owner_key)
    response = post(env, reply("approve act-1", dingtalk=forged))
    assert response.status_code == 401 and response.json()["reason"] == "bad_signature"
    assert env.publisher.published == []


def test_a_callback_encrypted_for_another_app_is_401(env: Env) -> None:
    request = DINGTALK.callback({"text": {"content": "approve act-1"}, "senderStaffId": "staff1"}, at=NOW,
                                owner_key="dingsomeoneelse")
    response = post(env, request)
    assert response.status_code == 401 and "another app" in response.json()["detail"]
    assert env.publisher.published == []


def test_a_captured_callback_cannot_be_repointed_at_another_action_or_user(env: Env) -> None:
    captured = reply("reject act-other", staff="staff9")
    other = reply("approve act-1", staff="staff1")
    spliced = DingTalkCallbackRequest(params=captured.params, body=other.body)
    response = post(env, spliced)
    assert response.status_code == 401 and response.json()["reason"] == "bad_signature"
    assert env.publisher.published == []


def test_a_stale_callback_is_refused(env: Env) -> None:
    response = post(env, reply("approve act-1", at=NOW - timedelta(minutes=6)))
    assert response.status_code == 401 and response.json()["reason"] == "stale"
    assert env.publisher.published == []
    [rejection] = env.rejections
    assert rejection.tenant is None and rejection.channel == "dingtalk"


def test_an_expired_action_cannot_be_approved_from_dingtalk(env: Env) -> None:
    env.clock.now = NOW + timedelta(minutes=31)
    response = post(env, reply("approve act-1", at=env.clock.now))
    assert response.status_code == 410 and response.json()["reason"] == "expired"
    assert env.publisher.published == []


def test_the_same_callback_twice_is_a_replay(env: Env) -> None:
    request = reply("reject act-1 not now")
    assert post(env, request).status_code == 200
    again = post(env, request)
    assert again.status_code == 409 and again.json()["reason"] == "replayed"
    assert len(env.decisions()) == 1


def test_a_callback_used_on_another_replica_is_refused_as_a_replay() -> None:
    shared = MemoryPublisher()
    request = reply("approve act-1")
    for a in make_env(publisher=shared):
        assert post(a, request).status_code == 200
    for b in make_env(publisher=shared):
        [(_, _, decision)] = shared.published
        assert isinstance(decision, ApprovalDecision)
        b.claims.see(decision)  # what ApprovalsFeed does with the approvals topic
        again = post(b, request)
        assert again.status_code == 409 and again.json()["reason"] == "replayed"
        assert len(shared.published) == 1


def test_a_staff_member_of_another_tenant_cannot_decide(env: Env) -> None:
    response = post(env, reply("approve act-1", staff="staff9"))
    assert response.status_code == 403 and response.json()["reason"] == "wrong_tenant"
    assert env.publisher.published == []


def test_a_stranger_is_refused(env: Env) -> None:
    response = post(env, reply("reject act-1", staff="stranger"))
    assert response.status_code == 403 and response.json()["reason"] == "unknown_approver"


def test_a_message_that_is_not_a_command_is_400(env: Env) -> None:
    response = post(env, reply("hello robot"))
    assert response.status_code == 400 and env.publisher.published == []


def test_an_action_decided_through_dingtalk_is_waiting_for_nothing_else(env: Env) -> None:
    env.pending.see(action("act-2"))
    assert post(env, reply("approve act-1")).status_code == 200
    assert post(env, reply("同意 act-2")).status_code == 200
    assert [d.action_id for d in env.decisions()] == ["act-1", "act-2"]


def test_dingtalks_published_example_decrypts() -> None:
    """DingTalk's own sample (open-dingtalk/DingTalk-Callback-Crypto) opens with our implementation."""
    keys = DingTalkCallbackKeys(token=SecretStr("mryue"),
                                aes_key=SecretStr("Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7"),
                                owner_key="ding6ccabc44d2c8d38b")
    plain = open_callback(
        keys, msg_signature="03044561471240d4a14bb09372dfcfd4fd0e40cb", timestamp="1608001896814", nonce="WL4PK6yA",
        encrypt="0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4y"
                "hELOFchzNukR+t8SB/qk4ROMu3",
        now_ms=1608001896814)
    assert plain == '{"EventType":"check_url"}'


def test_the_robot_secret_alone_is_refused_with_what_to_configure() -> None:
    with pytest.raises(ValueError, match="dingtalk_app_secret no longer authenticates DingTalk decisions"):
        ApprovalSettings(dingtalk_app_secret=SecretStr("SEC-robot"))
    with pytest.raises(ValueError, match="missing dingtalk_owner_key"):
        ApprovalSettings(dingtalk_callback_token=SecretStr("t"), dingtalk_aes_key=SecretStr("a" * 43))
