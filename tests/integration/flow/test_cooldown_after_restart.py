"""Issue 12: a worker restart must not make the next alert's action "in cooldown".

Two analyses of one target (same fingerprint, two incidents) arrive further apart than the action's
cooldown, with the worker killed and started again in between. A restarted worker decides again what
it had decided since its last commit (and the rca stage re-produces the analyses of re-delivered
incidents): here the first analysis reaches it again, as it does then. The first analysis must stay
decided once, and the second action must go ahead like the first. On the real broker and the real
worker process, with the bundled policy whose cooldowns are shortened to a few seconds.
"""

from __future__ import annotations

import re
import signal
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from policies import DEFAULT_POLICY_FILE
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, RcaResult, Record
from schemas.topics import ACTIONS, RCA_RESULT
from streams.wiring.supervisor import Stack
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader
from tests.integration.flow.test_worker_failure_edges import _triaged

pytestmark = pytest.mark.integration

COOLDOWN_S = 6


def _short_cooldowns(tmp: Path) -> Path:
    """The bundled policy with every cooldown at COOLDOWN_S seconds."""
    text = re.sub(r"cooldown: *\S+", f"cooldown: {COOLDOWN_S}s", DEFAULT_POLICY_FILE.read_text())
    path = tmp / "policies.yaml"
    path.write_text(text)
    return path


def _decisions(records: list[Record], tenant: str, incident_id: str) -> list[ActionEvent]:
    return [r for r in records if isinstance(r, ActionEvent) and r.tenant == tenant and r.incident_id == incident_id
            and r.state in (ActionState.APPROVED, ActionState.AWAITING_APPROVAL, ActionState.REJECTED)]


def _produce_in_order(bootstrap: str, codec: Codec, topic: str, results: list[RcaResult]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
    for result in results:
        producer.produce(topic, key=f"{result.tenant}:{result.incident_id}".encode(),
                         value=codec.encode(result, topic=topic), partition=0)
    assert producer.flush(30) == 0


def _restart_worker(stack: Stack) -> None:
    child = stack.children["worker"]
    child.send_signal(signal.SIGKILL)
    child.wait(60)
    stack.start_role("worker")


def test_a_restart_between_two_alerts_outside_the_cooldown_does_not_put_the_second_in_cooldown(
    broker: object, tmp_path: Path, samples_dir: Path, codec: Codec
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    stack = stack_for(bootstrap, tmp_path, roles=("worker",),
                      extra_env={"RCAFLOW_POLICIES_FILE": str(_short_cooldowns(tmp_path))})
    prefix = stack.settings.kafka.topic_prefix
    ensure_topics(bootstrap, prefix)
    tenant = f"cd-{uuid.uuid4().hex[:6]}"
    first = _triaged(samples_dir, tenant, f"m-{uuid.uuid4().hex[:6]}")
    # The same target alerting again later: a new incident (another opening event) of the same fingerprint.
    second = _triaged(samples_dir, tenant, f"m-{uuid.uuid4().hex[:6]}")
    assert second.incident.fingerprint == first.incident.fingerprint and second.incident_id != first.incident_id
    publisher = KafkaPublisher(bootstrap, codec, prefix)
    with stack:
        actions = TopicReader(bootstrap, codec, ACTIONS, prefix, alive=stack.check)
        try:
            publisher.publish_sync(RCA_RESULT, f"{tenant}:{first.incident_id}", first)
            actions.wait_for(lambda rs: any(a.state is ActionState.APPROVED
                                            for a in _decisions(rs, tenant, first.incident_id)),
                             timeout=90, what="the first incident's approved action")
            time.sleep(COOLDOWN_S + 1)  # the cooldown of the first action is over
            _restart_worker(stack)
            # The first analysis again, as a restart re-delivers it, then the second, in this order on one partition
            # (one fingerprint, so one partition after the group_by too).
            _produce_in_order(bootstrap, codec, RCA_RESULT.full_name(prefix), [first, second])
            records = actions.wait_for(lambda rs: bool(_decisions(rs, tenant, second.incident_id)), timeout=90,
                                       what="the second incident's decision")
            actions.poll(3.0)  # anything else the restarted worker decides
            records = actions.records
        finally:
            actions.close()
            publisher.close_sync()

    once = _decisions(records, tenant, first.incident_id)
    again = _decisions(records, tenant, second.incident_id)
    assert [(a.name, a.reason) for a in again if "in cooldown" in a.reason] == []
    assert {(a.name, a.state) for a in again} == {(a.name, a.state) for a in once}
    assert any(a.state is ActionState.APPROVED for a in again)
    # The first analysis was decided once, before the restart: one record per action, none re-decided.
    assert sorted(a.name for a in once) == sorted({a.name for a in once}), \
        [(a.name, a.state.value, a.reason, a.at) for a in once]
