"""`rcaflow audit verify` on the real audit topic: what a crashed audit writer leaves passes with warnings,
tampering fails.

The records come from the real audit stage: the worker sends a step, dies before it stores the new chain
head, and appends the same step again from the old head when the input is re-delivered; its producer may
also have sent one record twice. An altered record and a forged fork fail the check.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result

from executors.audit import AuditChain
from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import ActionEvent, ActionState, AuditKind, AuditRecord, Risk
from schemas.topics import AUDIT
from streams.commands.audit import audit
from streams.stages.audit import Audit, content_id
from streams.stages.core import StageContext
from streams.wiring.topics_admin import ensure_topics


def _clock() -> Iterator[datetime]:
    moment = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    while True:
        moment += timedelta(seconds=1)
        yield moment


class Writer:
    """The worker's audit agent for one tenant: the real stage, and the head row it keeps between records."""

    def __init__(self, tenant: str) -> None:
        ticks = _clock()
        self.tenant = tenant
        self.stage = Audit(context=StageContext(clock=lambda: next(ticks)))
        self.head: dict[str, Any] | None = None

    def step(self, state: ActionState, *, store_head: bool = True) -> AuditRecord:
        action = ActionEvent(tenant=self.tenant, action_id="act-1", incident_id="inc-1", alert_class="log_flood",
                             name="collect_diagnostics", tool="diagnostics", operation="collect",
                             params={"namespace": "insight-system", "workload": "fluent-bit"}, risk=Risk.READ,
                             state=state, at=datetime(2026, 12, 6, 8, 0, tzinfo=UTC))
        result = self.stage(action, self.head, content_id(action.model_dump_json().encode()))
        [out] = result.outputs
        assert isinstance(out.record, AuditRecord)
        if store_head:
            self.head = result.state
        return out.record


def _publish(bootstrap: str, prefix: str, records: list[AuditRecord]) -> None:
    ensure_topics(bootstrap, prefix, specs=[AUDIT])
    publisher = KafkaPublisher(bootstrap, make_codec(None), prefix)
    try:
        for record in records:
            publisher.publish_sync(AUDIT, record.tenant, record)
    finally:
        publisher.close_sync()


def _verify(bootstrap: str, prefix: str) -> Result:
    return CliRunner().invoke(audit, ["verify", "--bootstrap", bootstrap, "--prefix", prefix])


def _crashed_chain(tenant: str) -> list[AuditRecord]:
    """approved, running (sent, then the worker died before storing its head), running again, succeeded twice."""
    writer = Writer(tenant)
    approved = writer.step(ActionState.APPROVED)
    lost_head = writer.step(ActionState.RUNNING, store_head=False)
    retried = writer.step(ActionState.RUNNING)
    succeeded = writer.step(ActionState.SUCCEEDED)
    return [approved, lost_head, retried, succeeded, succeeded]


def test_what_a_crashed_writer_leaves_passes_with_a_warning(broker: object, topic_prefix: str) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    clean = Writer("clean")
    _publish(bootstrap, topic_prefix, [*_crashed_chain(tenant), clean.step(ActionState.APPROVED),
                                       clean.step(ActionState.RUNNING)])
    result = _verify(bootstrap, topic_prefix)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.output
    assert f"warning: tenant {tenant!r} seq 2: crash artefact: re-appended from the same predecessor" in warnings[0]
    assert f"warning: tenant {tenant!r} seq 3: crash artefact: the same record written again" in warnings[1]
    assert "ok: 7 record(s) of 2 tenant(s) verified (2 crash artefact(s): see the warnings)" in result.output


@pytest.mark.parametrize("tampering", ["altered", "forged fork"])
def test_tampering_next_to_crash_artefacts_fails(broker: object, topic_prefix: str, tampering: str) -> None:
    bootstrap: str = broker.bootstrap  # type: ignore[attr-defined]
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    records = _crashed_chain(tenant)
    if tampering == "altered":
        records[2] = records[2].model_copy(update={"actor": "mallory"})  # the retried record, hash left as it was
        expected = f"tenant {tenant!r} seq 2: content does not match its hash (record altered)"
    else:  # a correctly hashed branch from seq 1 that says something else happened
        forger = AuditChain(tenant)
        forger.resume(records[0])
        records.append(forger.append(kind=AuditKind.EXECUTION, actor="executor", subject_id="act-1",
                                     action="collect_diagnostics:failed", detail=dict(records[1].detail),
                                     at=records[1].at))
        expected = f"tenant {tenant!r} seq 2: forks the chain at seq 1 with content that differs"
    _publish(bootstrap, topic_prefix, records)
    result = _verify(bootstrap, topic_prefix)
    assert result.exit_code == 1, result.output
    assert expected in result.output
    assert "FAILED" in result.output


pytestmark = pytest.mark.integration
