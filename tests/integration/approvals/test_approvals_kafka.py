"""On a real broker: the approvals view follows the actions topic, a Slack click lands on approvals,
and `audit verify` reads the audit topic (every partition, from the beginning)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from executors.approvals import slack_signature
from executors.audit import AuditChain
from executors.notify import slack as slack_messages
from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import ActionEvent, ActionState, ApprovalDecision, AuditKind, Decision, Risk
from schemas.topics import ACTIONS, APPROVALS, AUDIT
from streams.api.actions_view import ActionsFeed, InMemoryPendingActions
from streams.api.approvals import ApprovalsConfig, build_approvals_router
from streams.commands.audit import audit
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader
from tests.support.approval_keys import APPROVAL_KEYS

SECRET = "integration-slack-signing-secret"


def waiting_action(action_id: str, now: datetime) -> ActionEvent:
    return ActionEvent(tenant="acme", action_id=action_id, incident_id="inc-1", alert_class="etcd_latency",
                       name="restart etcd member", tool="k8s", operation="rollout_restart",
                       params={"namespace": "kube-system", "kind": "statefulset", "name": "etcd"}, risk=Risk.HIGH,
                       state=ActionState.AWAITING_APPROVAL, at=now, expires_at=now + timedelta(minutes=30))


def test_a_click_on_an_action_read_from_kafka_lands_on_the_approvals_topic(broker: object, topic_prefix: str) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, specs=[ACTIONS, APPROVALS])
    codec = make_codec(None)
    publisher = KafkaPublisher(bootstrap, codec, topic_prefix)
    now = datetime.now(UTC)
    for i in range(5):  # spread over partitions by key
        publisher.publish_sync(ACTIONS, f"acme:act-{i}", waiting_action(f"act-{i}", now))

    pending = InMemoryPendingActions()
    feed = ActionsFeed(bootstrap=bootstrap, codec=codec, pending=pending, topic_prefix=topic_prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run())
        await asyncio.wait_for(feed.caught_up.wait(), 60)
        yield
        feed.stop()
        await task

    app = FastAPI(lifespan=lifespan)
    config = ApprovalsConfig(approvers={"acme": frozenset({"slack:U1"})}, approval_keys=APPROVAL_KEYS,
                             slack_signing_secret=SecretStr(SECRET))
    app.include_router(build_approvals_router(config=config, pending=pending, publisher=publisher))
    payload = {"type": "block_actions", "user": {"id": "U1"}, "response_url": "https://hooks.slack.com/actions/x",
               "actions": [{"action_id": slack_messages.APPROVE, "value": "acme|act-3"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    reader = TopicReader(bootstrap, codec, APPROVALS, topic_prefix)
    try:
        with TestClient(app) as client:
            assert len(pending) == 5
            ts = str(int(datetime.now(UTC).timestamp()))
            response = client.post("/approvals/slack", content=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": slack_signature(SECRET, ts, body)})
            assert response.status_code == 200, response.text
        [decision] = reader.wait_for(lambda rs: len(rs) >= 1, timeout=30, what="the approval decision")
        assert isinstance(decision, ApprovalDecision)
        assert (decision.tenant, decision.action_id, decision.decision, decision.approver) == (
            "acme", "act-3", Decision.APPROVE, "slack:U1")
    finally:
        reader.close()
        publisher.close_sync()


@pytest.mark.parametrize("tamper", [False, True])
def test_audit_verify_reads_the_topic(broker: object, topic_prefix: str, tamper: bool) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, specs=[AUDIT])
    publisher = KafkaPublisher(bootstrap, make_codec(None), topic_prefix)
    try:
        for tenant in ("acme", "other", "third"):
            chain = AuditChain(tenant)
            for i in range(1, 4):
                record = chain.append(kind=AuditKind.APPROVAL, actor="slack:U1", subject_id=f"act-{i}",
                                      action="approved")
                if tamper and tenant == "other" and i == 2:
                    record = record.model_copy(update={"action": "rejected"})
                publisher.publish_sync(AUDIT, tenant, record)
    finally:
        publisher.close_sync()
    result = CliRunner().invoke(audit, ["verify", "--bootstrap", bootstrap, "--prefix", topic_prefix])
    if tamper:
        assert result.exit_code == 1, result.output
        assert "tenant 'other' seq 2: content does not match its hash" in result.output
    else:
        assert result.exit_code == 0, result.output
        assert "ok: 9 record(s) of 3 tenant(s) verified" in result.output


def test_the_view_of_an_empty_actions_topic_is_caught_up_at_once(broker: object, topic_prefix: str) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix, specs=[ACTIONS])
    pending = InMemoryPendingActions()
    feed = ActionsFeed(bootstrap=bootstrap, codec=make_codec(None), pending=pending, topic_prefix=topic_prefix)

    async def follow() -> None:
        task = asyncio.create_task(feed.run())
        try:
            await asyncio.wait_for(feed.caught_up.wait(), 60)
        finally:
            feed.stop()
            await task

    asyncio.run(follow())
    assert len(pending) == 0 and pending.get("act-1") is None
