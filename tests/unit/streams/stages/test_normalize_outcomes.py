"""The normalize stage's mail outcomes as the worker sends them: alerts, alerts and a kept mail, not an alert."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from schemas.codec import AvroSingleObjectCodec
from schemas.records import AlertEvent, DeadLetter, RawMail, SourceKind
from schemas.topics import DEAD_LETTER, NORMALIZED
from streams.settings import Settings
from streams.stages.core import Out, Position, outputs
from streams.stages.metrics import StageMetrics
from streams.stages.normalize import NOT_AN_ALERT, PARTIAL, STAGE
from streams.wiring.runtime import build_stages

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "mail"
CODEC = AvroSingleObjectCodec()
WHERE = Position("raw-mail", 0, 42, b"acme:<m@x>")


def _run(path: Path) -> tuple[list[Out], str, CollectorRegistry, bytes]:
    registry = CollectorRegistry()
    stage = build_stages(Settings(), StageMetrics(registry, tenants=["default"])).normalize
    mail = RawMail(tenant="default", message_id="<m@x>", mailbox="alerts", source=SourceKind.IMAP,
                   received_at=datetime(2026, 11, 25, tzinfo=UTC), raw=path.read_bytes())
    payload = CODEC.encode(mail)
    result = stage(mail, WHERE)
    outs = outputs(STAGE, result, payload, WHERE, stage.context)
    for out in outs:  # every output is a record the worker can send
        CODEC.encode(out.record)
    return outs, result.outcome, registry, payload


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sample of the mail's tenant. Stage counts carry the tenant of the record in hand, which the worker's
    edge notes and nothing does here (so ``_other``); mail outcomes and dead letters name the mail's tenant."""
    tenant = "_other" if name == "rcaflow_stage_processed_total" else "default"
    return registry.get_sample_value(name, {"tenant": tenant, **labels}) or 0.0


def test_a_bounce_goes_to_dead_letter_as_not_an_alert_and_nothing_reaches_triage() -> None:
    outs, outcome, registry, payload = _run(FIXTURES / "not_alert" / "dsn-bounce.eml")
    assert outcome == NOT_AN_ALERT
    assert [o.spec for o in outs] == [DEAD_LETTER]
    letter = outs[0].record
    assert isinstance(letter, DeadLetter)
    assert (letter.stage, letter.error_type) == ("normalize", "NotAnAlertError")
    assert letter.reason.startswith("not_an_alert: delivery_report: ")
    assert letter.payload == payload and (letter.source_topic, letter.offset) == ("raw-mail", 42)  # replayable
    assert _value(registry, "rcaflow_mail_not_alert_total", reason="delivery_report") == 1
    assert _value(registry, "rcaflow_stage_processed_total", stage="normalize", outcome="not_an_alert") == 1
    assert _value(registry, "rcaflow_stage_failed_total", stage="normalize", error_type="NotAnAlertError") == 1


def test_the_good_rows_go_on_and_the_mail_with_a_bad_row_is_kept_once_with_the_reason() -> None:
    outs, outcome, registry, payload = _run(FIXTURES / "dce5_control_cluster_details" / "bad-row-among-good.eml")
    assert outcome == PARTIAL
    events = [o.record for o in outs if o.spec is NORMALIZED]
    assert [e.alert for e in events if isinstance(e, AlertEvent)] == ["RecordingRulesError", "JenkinsRestarted"]
    letters = [o.record for o in outs if o.spec is DEAD_LETTER]
    assert len(letters) == 1 and isinstance(letters[0], DeadLetter)
    assert letters[0].error_type == "RejectedRowsError"
    assert letters[0].reason.startswith("rejected_rows: 1 row(s) are not alerts, 2 alert(s) kept: table 1 row 3: "
                                        "alert_name_workload: ")
    assert letters[0].payload == payload
    assert _value(registry, "rcaflow_mail_rows_rejected_total", reason="alert_name_workload") == 1
    assert _value(registry, "rcaflow_stage_processed_total", stage="normalize", outcome="partial") == 1


def test_a_clean_rowspan_digest_is_only_alerts() -> None:
    outs, outcome, registry, _ = _run(FIXTURES / "dce5_control_cluster_details" / "rowspan-cluster-digest.eml")
    assert outcome == "ok"
    assert [o.spec for o in outs] == [NORMALIZED] * 6
    assert _value(registry, "rcaflow_stage_failed_total", stage="normalize", error_type="RejectedRowsError") == 0
