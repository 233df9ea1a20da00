"""The approval endpoints as Slack and a browser see them: signed requests in, decisions out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from executors.notify import slack as slack_messages
from schemas.records import ActionEvent, ActionState, ApprovalDecision, Decision
from streams.api.actions_view import InMemoryPendingActions
from streams.api.approvals import ApprovalsConfig, build_approvals_router
from tests.support.approval_keys import APPROVAL_KEYS
from tests.unit.streams.api.approval_env import SLACK_SECRET, Env, click_body, make_env, post_slack
from tests.unit.streams.approval_helpers import NOW, MemoryPublisher, action


@pytest.fixture
def env() -> Iterator[Env]:
    yield from make_env()




def test_a_valid_click_publishes_the_decision_and_removes_the_buttons(env: Env) -> None:
    response = post_slack(env, click_body())
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "action_id": "act-1", "decision": "approve"}
    [(topic, key, record)] = env.publisher.published
    assert topic == "approvals" and key == "acme:act-1"
    assert record == APPROVAL_KEYS.sign(ApprovalDecision(
        tenant="acme", action_id="act-1", decision=Decision.APPROVE, approver="slack:U1", channel="slack",
        decided_at=NOW, claim_id=record.claim_id))
    APPROVAL_KEYS.verify(record)  # the worker applies it: the API signed what it verified
    assert record.claim_id.startswith("slack:") and SLACK_SECRET not in record.claim_id
    [update] = env.slack.posts
    assert update["replace_original"] is True
    assert not [b for b in update["blocks"] if b["type"] == "actions"]
    assert "Approved by <@U1>" in json.dumps(update)
    assert env.rejections == []


def test_reject_button_publishes_a_rejection_decision(env: Env) -> None:
    assert post_slack(env, click_body(action_id=slack_messages.REJECT)).status_code == 200
    assert [d.decision for d in env.decisions()] == [Decision.REJECT]


def test_a_replayed_request_outside_the_window_is_refused_and_publishes_nothing(env: Env) -> None:
    response = post_slack(env, click_body(), at=NOW - timedelta(minutes=6))
    assert response.status_code == 401
    assert response.json()["reason"] == "stale"
    assert env.publisher.published == [] and env.slack.posts == []
    [rejection] = env.rejections
    assert rejection.tenant is None and rejection.channel == "slack"


def test_a_bad_signature_is_401(env: Env) -> None:
    response = post_slack(env, click_body(), secret="not-the-secret")
    assert response.status_code == 401 and response.json()["reason"] == "bad_signature"
    assert env.publisher.published == []


def test_the_same_request_twice_is_a_replay(env: Env) -> None:
    body = click_body()
    assert post_slack(env, body).status_code == 200
    again = post_slack(env, body)
    assert again.status_code == 409 and again.json()["reason"] == "replayed"
    assert len(env.publisher.published) == 1


def test_a_second_click_changes_nothing(env: Env) -> None:
    assert post_slack(env, click_body(user="U1")).status_code == 200
    env.clock.now += timedelta(seconds=3)
    second = post_slack(env, click_body(user="U2", action_id=slack_messages.REJECT))
    assert second.status_code == 409 and second.json()["reason"] == "already_decided"
    assert [d.decision for d in env.decisions()] == [Decision.APPROVE]
    # Once the worker recorded the approval, the view says so too.
    env.pending.see(action(state=ActionState.APPROVED))
    env.clock.now += timedelta(seconds=3)
    third = post_slack(env, click_body(user="U2"))
    assert third.status_code == 409 and "is approved" in third.json()["detail"]
    assert len(env.decisions()) == 1


def test_an_approver_of_another_tenant_cannot_decide(env: Env) -> None:
    response = post_slack(env, click_body(user="U9"))
    assert response.status_code == 403 and response.json()["reason"] == "wrong_tenant"
    assert env.publisher.published == []
    [rejection] = env.rejections
    assert rejection.tenant == "acme" and rejection.approver == "slack:U9"


def test_a_button_naming_another_tenant_is_refused(env: Env) -> None:
    response = post_slack(env, click_body(user="U9", value="other|act-1"))
    assert response.status_code == 403 and response.json()["reason"] == "wrong_tenant"
    assert env.publisher.published == []


def test_an_unknown_approver_is_refused_and_told_why(env: Env) -> None:
    response = post_slack(env, click_body(user="U404"))
    assert response.status_code == 403 and response.json()["reason"] == "unknown_approver"
    assert "slack:U404 is not an approver of tenant 'acme'" in response.json()["detail"]
    assert env.publisher.published == []
    [note] = env.slack.posts
    assert note["response_type"] == "ephemeral" and note["replace_original"] is False


def test_an_expired_action_cannot_be_approved(env: Env) -> None:
    env.clock.now = NOW + timedelta(minutes=31)
    response = post_slack(env, click_body())
    assert response.status_code == 410 and response.json()["reason"] == "expired"
    assert env.publisher.published == []


def test_an_unknown_action_is_404(env: Env) -> None:
    response = post_slack(env, click_body(value="acme|act-404"))
    assert response.status_code == 404 and response.json()["reason"] == "unknown_action"


def test_a_payload_that_is_not_our_button_is_400(env: Env) -> None:
    response = post_slack(env, click_body(action_id="somebody_elses_button"))
    assert response.status_code == 400 and response.json()["reason"] == "malformed"


def test_broker_down_is_503_and_the_click_can_be_repeated(env: Env) -> None:
    env.publisher.fail_next = 1
    first = post_slack(env, click_body())
    assert first.status_code == 503 and first.headers["retry-after"]
    env.clock.now += timedelta(seconds=2)
    assert post_slack(env, click_body()).status_code == 200
    assert len(env.decisions()) == 1


def test_a_response_url_outside_slack_is_not_called(env: Env) -> None:
    body = click_body().replace(b"hooks.slack.com", b"evil.example")
    assert post_slack(env, body).status_code == 200
    assert env.slack.posts == []


def test_only_configured_channels_are_mounted() -> None:
    app = FastAPI()
    app.include_router(build_approvals_router(config=ApprovalsConfig(approvers={}, approval_keys=APPROVAL_KEYS),
                                              pending=InMemoryPendingActions(), publisher=MemoryPublisher()))
    with TestClient(app) as client:
        assert client.post("/approvals/slack", content=b"").status_code == 404


def test_the_pending_view_never_moves_an_action_back_to_waiting() -> None:
    pending = InMemoryPendingActions()
    pending.see(action(state=ActionState.APPROVED))
    pending.see(action())  # an older record re-read after a restart
    got = pending.get("act-1")
    assert isinstance(got, ActionEvent) and got.state is ActionState.APPROVED


def test_a_late_running_record_does_not_hide_the_outcome() -> None:
    """An executor that lost the partition writes its ``running`` after the new owner's ``succeeded``."""
    pending = InMemoryPendingActions()
    for state in (ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED, ActionState.RUNNING,
                  ActionState.APPROVED):
        pending.see(action(state=state))
    got = pending.get("act-1")
    assert isinstance(got, ActionEvent) and got.state is ActionState.SUCCEEDED
    pending.see(action(state=ActionState.ROLLED_BACK))  # one outcome may still follow another
    got = pending.get("act-1")
    assert isinstance(got, ActionEvent) and got.state is ActionState.ROLLED_BACK


def test_a_click_on_the_details_link_button_is_acknowledged_and_decides_nothing(env: Env) -> None:
    response = post_slack(env, click_body(action_id=slack_messages.OPEN))
    assert response.status_code == 200
    assert env.publisher.published == [] and env.rejections == [] and env.slack.posts == []


def test_a_button_naming_another_tenant_is_refused_even_from_an_approver_of_the_actions_tenant(env: Env) -> None:
    """The tenant the request names must be the action's: U1 may decide for acme, but not on other's route."""
    response = post_slack(env, click_body(user="U1", value="other|act-1"))
    assert response.status_code == 403 and response.json()["reason"] == "wrong_tenant"
    assert env.publisher.published == []
    [rejection] = env.rejections
    assert rejection.tenant == "acme" and rejection.approver == "slack:U1"


def test_a_click_already_used_on_another_replica_is_refused_as_a_replay() -> None:
    """Replica B knows what replica A published (the approvals topic): the same signed request is a replay."""
    shared = MemoryPublisher()
    body = click_body()
    for a in make_env(publisher=shared):
        assert post_slack(a, body).status_code == 200
    for b in make_env(publisher=shared):
        for _, _, record in shared.published:
            assert isinstance(record, ApprovalDecision)
            b.claims.see(record)  # what ApprovalsFeed does with every record of the approvals topic
        again = post_slack(b, body)
        assert again.status_code == 409 and again.json()["reason"] == "replayed"
        assert len(shared.published) == 1


def test_a_decision_the_api_did_not_sign_on_the_topic_does_not_block_the_real_approver(env: Env) -> None:
    """Whoever can write the approvals topic must not make a genuine click "already decided" on every replica."""
    forged = ApprovalDecision(tenant="acme", action_id="act-1", decision=Decision.REJECT, approver="slack:U2",
                              channel="slack", decided_at=NOW)
    env.claims.see(forged)  # what ApprovalsFeed does with every record of the approvals topic
    env.claims.see(APPROVAL_KEYS.sign(forged).model_copy(update={"action_id": "act-1", "approver": "slack:U9"}))

    response = post_slack(env, click_body())

    assert response.status_code == 200, response.text
    assert [d.decision for d in env.decisions()] == [Decision.APPROVE]
    env.claims.see(env.decisions()[0])  # the genuine one counts: a second click is refused everywhere
    assert post_slack(env, click_body(user="U2"), at=NOW).json()["reason"] in {"already_decided", "replayed"}
