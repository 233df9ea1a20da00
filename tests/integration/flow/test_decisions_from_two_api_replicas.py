"""Two API replicas and one action: the worker acts on the first decision only.

A second decision is kept as a refusal ("already decided by X at T", or "replayed" when it spent the
same credential) in dead-letter and in the tenant's audit chain; the action runs once and its decision
never flips. A credential used on one replica is refused on the other once it has read the approvals topic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from executors.approvals.dingtalk_event import DingTalkCallbackKeys
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import (
    ActionEvent,
    ActionState,
    ApprovalDecision,
    AuditRecord,
    DeadLetter,
    Decision,
    Record,
)
from schemas.topics import ACTIONS, APPROVALS, AUDIT, DEAD_LETTER
from streams.api.actions_view import ActionsFeed, InMemoryPendingActions
from streams.api.approvals import ApprovalsConfig, build_approvals_router
from streams.api.claims import ApprovalsFeed, SharedClaims, request_key
from streams.wiring.supervisor import Stack
from tests.integration.flow.approval_helpers import wait_until_the_worker_waits
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader, send_mail_file
from tests.support.approval_keys import APPROVAL_KEYS, signed_decision
from tests.support.dingtalk import DingTalkStandIn, new_aes_key

#: Who may approve for this module's tenants: the executor runs a human-approved action only for one of them.
APPROVERS = {"t-two-clicks": ["slack:U1", "slack:U2"], "t-dingtalk": ["dingtalk:manager4220"]}


@pytest.fixture(scope="module")
def stack(broker: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """This module's worker + executor, with :data:`APPROVERS` configured (topic prefix of its own)."""
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    with stack_for(bootstrap, tmp_path_factory.mktemp("stack"),
                   extra_env={"RCAFLOW_APPROVALS__APPROVERS": json.dumps(APPROVERS)}) as running:
        yield running


def test_an_approve_and_a_reject_from_two_replicas_run_the_action_once_and_refuse_the_second(
    stack: Stack, codec: Codec, samples_dir: Path
) -> None:
    tenant = "t-two-clicks"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    send_mail_file(publisher, tenant, samples_dir / "jenkins_restart.eml")

    actions = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)

    def mine(records: list[Record]) -> list[ActionEvent]:
        return [r for r in records if isinstance(r, ActionEvent) and r.tenant == tenant]

    records = actions.wait_for(lambda rs: any(a.state is ActionState.AWAITING_APPROVAL for a in mine(rs)),
                               what="an action awaiting approval")
    waiting = next(a for a in mine(records) if a.state is ActionState.AWAITING_APPROVAL)
    key = f"{tenant}:{waiting.action_id}"
    wait_until_the_worker_waits(stack, key)
    # Each replica's in-memory claim let its click through: both decisions reach the approvals topic.
    for approver, verdict in (("slack:U1", Decision.APPROVE), ("slack:U2", Decision.REJECT)):
        publisher.publish_sync(APPROVALS, key, signed_decision(tenant, waiting.action_id, verdict,
                                                              approver=approver))

    def states(rs: list[Record]) -> list[ActionState]:
        return [a.state for a in mine(rs) if a.action_id == waiting.action_id]

    actions.wait_for(lambda rs: ActionState.SUCCEEDED in states(rs), timeout=90, what="the approved action's run")

    letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
    (refusal,) = [r for r in letters.wait_for(
        lambda rs: any(isinstance(r, DeadLetter) and r.tenant == tenant for r in rs), what="the refusal")
        if isinstance(r, DeadLetter) and r.tenant == tenant]
    assert refusal.stage == "approvals" and refusal.error_type == "ApprovalRefused"
    assert refusal.reason.startswith("already_decided: already decided by slack:U1 at "), refusal.reason
    assert "reject by slack:U2 changes nothing" in refusal.reason

    audit = TopicReader(stack.bootstrap, codec, AUDIT, prefix, alive=stack.check)
    audit.wait_for(lambda rs: any(isinstance(r, AuditRecord) and r.tenant == tenant
                                  and r.action == "approval_rejected" for r in rs), what="the refusal's audit record")
    (refused,) = [r for r in audit.records if isinstance(r, AuditRecord) and r.tenant == tenant
                  and r.action == "approval_rejected"]
    assert refused.actor == "slack:U2" and refused.subject_id == waiting.action_id
    assert refused.detail["reason"] == "already_decided"

    actions.poll(3.0)  # anything the second decision might have caused would show up by now
    seen = states(actions.records)
    assert seen.count(ActionState.APPROVED) == 1 and ActionState.REJECTED not in seen, seen
    assert seen.count(ActionState.RUNNING) == 1 and seen.count(ActionState.SUCCEEDED) == 1, seen
    for reader in (actions, letters, audit):
        reader.close()
    publisher.close_sync()


@contextmanager
def api_replica(stack: Stack, codec: Codec, approvers: dict[str, frozenset[str]],
                dingtalk: DingTalkStandIn) -> Iterator[tuple[TestClient, SharedClaims, ApprovalsFeed]]:
    """One API replica as `rcaflow api` builds it: its own views of actions and of approvals (the shared memory)."""
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    pending = InMemoryPendingActions()
    actions_feed = ActionsFeed(bootstrap=stack.bootstrap, codec=codec, pending=pending, topic_prefix=prefix)
    claims = SharedClaims(keys=APPROVAL_KEYS)  # as `rcaflow api` builds it
    claims_feed = ApprovalsFeed(bootstrap=stack.bootstrap, codec=codec, claims=claims, topic_prefix=prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(actions_feed.run()), asyncio.create_task(claims_feed.run())]
        await asyncio.wait_for(asyncio.gather(actions_feed.caught_up.wait(), claims_feed.caught_up.wait()), 60)
        yield
        actions_feed.stop()
        claims_feed.stop()
        await asyncio.gather(*tasks)

    config = ApprovalsConfig(approvers=approvers, approval_keys=APPROVAL_KEYS, dingtalk_callback=DingTalkCallbackKeys(
        token=SecretStr(dingtalk.token), aes_key=SecretStr(dingtalk.aes_key), owner_key=dingtalk.owner_key))
    app = FastAPI(lifespan=lifespan)
    app.include_router(build_approvals_router(config=config, pending=pending, publisher=publisher, claims=claims))
    try:
        with TestClient(app) as client:
            yield client, claims, claims_feed
    finally:
        publisher.close_sync()


def test_a_captured_dingtalk_callback_decides_once_on_one_replica_and_is_a_replay_everywhere_else(
    stack: Stack, codec: Codec, samples_dir: Path
) -> None:
    tenant = "t-dingtalk"
    prefix = stack.settings.kafka.topic_prefix
    publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
    send_mail_file(publisher, tenant, samples_dir / "jenkins_restart.eml")
    actions = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)

    def mine(records: list[Record]) -> list[ActionEvent]:
        return [r for r in records if isinstance(r, ActionEvent) and r.tenant == tenant]

    records = actions.wait_for(lambda rs: any(a.state is ActionState.AWAITING_APPROVAL for a in mine(rs)),
                               what="an action awaiting approval")
    waiting = next(a for a in mine(records) if a.state is ActionState.AWAITING_APPROVAL)
    wait_until_the_worker_waits(stack, f"{tenant}:{waiting.action_id}")
    dingtalk = DingTalkStandIn(token="cb-token", aes_key=new_aes_key(), owner_key="dingapp42")
    approvers = {tenant: frozenset({"dingtalk:manager4220"})}
    captured = dingtalk.robot_reply(f"approve {waiting.action_id} disk checked", staff="manager4220",
                                    at=datetime.now(UTC))

    with api_replica(stack, codec, approvers, dingtalk) as (a, _, _), \
            api_replica(stack, codec, approvers, dingtalk) as (b, b_claims, _):
        first = a.post(captured.url(), json=captured.body)
        assert first.status_code == 200, first.text
        assert dingtalk.open_answer(first.json()) == "success"
        approvals = TopicReader(stack.bootstrap, codec, APPROVALS, prefix, alive=stack.check)
        [decision] = [r for r in approvals.wait_for(
            lambda rs: any(isinstance(r, ApprovalDecision) and r.tenant == tenant for r in rs),
            what="replica A's decision") if isinstance(r, ApprovalDecision) and r.tenant == tenant]
        assert decision.approver == "dingtalk:manager4220" and decision.claim_id.startswith("dingtalk:")
        # Replica B learns of it from the approvals topic (its feed), not from A.
        approvals.wait_for(lambda _: b_claims.taken(request_key(decision.claim_id), now=datetime.now(UTC)),
                           what="replica B reading the decision from the approvals topic")
        again = b.post(captured.url(), json=captured.body)
        assert again.status_code == 409 and again.json()["reason"] == "replayed", again.text

    # Had B taken it inside the feed's lag, both decisions would reach the worker: it keeps the first.
    publisher.publish_sync(APPROVALS, f"{tenant}:{waiting.action_id}", signed_decision(
        tenant, waiting.action_id, approver=decision.approver, channel=decision.channel, reason=decision.reason,
        claim_id=decision.claim_id))

    def states(rs: list[Record]) -> list[ActionState]:
        return [x.state for x in mine(rs) if x.action_id == waiting.action_id]

    actions.wait_for(lambda rs: ActionState.SUCCEEDED in states(rs), timeout=90, what="the approved action's run")
    letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
    (refusal,) = [r for r in letters.wait_for(
        lambda rs: any(isinstance(r, DeadLetter) and r.tenant == tenant for r in rs), what="the refusal")
        if isinstance(r, DeadLetter) and r.tenant == tenant]
    assert refusal.reason.startswith("replayed: the dingtalk request behind this approve by dingtalk:manager4220 "
                                     "was already used at "), refusal.reason
    audit = TopicReader(stack.bootstrap, codec, AUDIT, prefix, alive=stack.check)
    audit.wait_for(lambda rs: any(isinstance(r, AuditRecord) and r.tenant == tenant
                                  and r.action == "approval_rejected" for r in rs), what="the replay's audit record")
    (refused,) = [r for r in audit.records if isinstance(r, AuditRecord) and r.tenant == tenant
                  and r.action == "approval_rejected"]
    assert refused.detail["reason"] == "replayed" and refused.actor == "dingtalk:manager4220"

    actions.poll(3.0)  # anything the replayed decision might have caused would show up by now
    seen = states(actions.records)
    assert seen.count(ActionState.APPROVED) == 1 and seen.count(ActionState.RUNNING) == 1, seen
    approved = next(x for x in mine(actions.records)
                    if x.action_id == waiting.action_id and x.state is ActionState.APPROVED)
    assert approved.approver == "dingtalk:manager4220"
    for reader in (actions, letters, audit, approvals):
        reader.close()
    publisher.close_sync()
