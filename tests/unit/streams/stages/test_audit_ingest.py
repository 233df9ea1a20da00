"""Every alert that comes in is a step in its tenant's audit chain, linked to what is decided about it after."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from executors.audit import verify
from schemas.codec import make_codec
from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    AuditKind,
    AuditRecord,
    EventSource,
    RawRef,
    Risk,
    SourceKind,
)
from streams.stages.audit import Audit, content_id
from streams.stages.core import StageContext

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)

EVENT = AlertEvent(
    tenant="acme", event_id="ev-1", fingerprint="fp-1", alert="etcdHighFsyncDurations", severity="P2",
    alert_class="etcd_latency", labels={"cluster": "HK-DCE5-PLATFORM"},
    raw=RawRef(mail_subject="Control Cluster Details", mail_id="<a1@dce5.example>"),
    source=EventSource(kind=SourceKind.IMAP, mailbox="alerts@corp.example", topic="raw-mail", partition=3, offset=41),
    received_at=T0, parser="dce5",
)


def _feed(audit: Audit, record: AlertEvent | ActionEvent, topic: str, head: dict[str, Any] | None
          ) -> tuple[AuditRecord | None, dict[str, Any] | None]:
    result = audit(record, head, content_id(make_codec(None).encode(record, topic=topic)))
    records = [o.record for o in result.outputs if isinstance(o.record, AuditRecord)]
    return (records[0] if records else None), result.state


def test_an_ingested_alert_is_audited_with_where_it_came_from_and_chained_to_its_decision() -> None:
    audit = Audit(context=StageContext(clock=lambda: T0))
    ingest, head = _feed(audit, EVENT, "normalized", None)
    assert ingest is not None and ingest.kind is AuditKind.INGEST
    assert ingest.actor == "imap:alerts@corp.example" and ingest.subject_id == "ev-1"
    assert ingest.action == "ingest:etcdHighFsyncDurations"
    assert ingest.detail["mail_id"] == "<a1@dce5.example>" and ingest.detail["raw"] == "raw-mail[3]@41"

    decided = ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="etcd_latency",
                          name="collect_diagnostics", tool="diagnostics", operation="collect", risk=Risk.READ,
                          state=ActionState.APPROVED, at=T0)
    decision, head = _feed(audit, decided, "actions", head)
    assert decision is not None and decision.prev_hash == ingest.hash
    assert verify([ingest, decision]) == []

    # The same record routed twice (a redelivery) is one step, not two.
    again, _ = _feed(audit, EVENT, "normalized", head)
    assert again is None
