"""check_chains tells what a crashed audit writer leaves from tampering, on chains built by the real AuditChain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from executors.audit import AuditChain
from schemas.records import AuditKind, AuditRecord
from streams.ops.audit_check import FindingKind, check_chains

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _append(chain: AuditChain, n: int, *, second: int) -> AuditRecord:
    return chain.append(kind=AuditKind.EXECUTION, actor="executor", subject_id=f"act-{n}", action="x:running",
                        detail={"source": f"src-{n}"}, at=T0 + timedelta(seconds=second))


def _kinds(records: list[AuditRecord], **options: bool) -> list[tuple[int, FindingKind]]:
    return [(f.seq, f.kind) for f in check_chains(records, **options)]


def test_a_retry_of_several_steps_from_an_old_head_is_one_crash_artefact() -> None:
    writer = AuditChain("acme")
    one = _append(writer, 1, second=1)
    abandoned = [_append(writer, 2, second=2), _append(writer, 3, second=3)]
    writer.resume(one)  # restarted from the head stored before the crash
    retried = [_append(writer, 2, second=10), _append(writer, 3, second=11), _append(writer, 4, second=12)]
    assert _kinds([one, *abandoned, *retried]) == [(2, FindingKind.RETRIED)]


def test_a_retry_that_says_something_else_is_an_alarm() -> None:
    writer = AuditChain("acme")
    one = _append(writer, 1, second=1)
    two, three = _append(writer, 2, second=2), _append(writer, 3, second=3)
    writer.resume(one)
    again = _append(writer, 2, second=10)
    other = _append(writer, 9, second=11)  # seq 3 of the new branch is a different step
    findings = check_chains([one, two, three, again, other])
    assert [(f.seq, f.kind, f.tampering) for f in findings] == [(2, FindingKind.RETRIED, False),
                                                                (3, FindingKind.FORKED, True)]


def test_abandoned_steps_never_repeated_are_reported_but_do_not_fail() -> None:
    writer = AuditChain("acme")
    one = _append(writer, 1, second=1)
    two, three = _append(writer, 2, second=2), _append(writer, 3, second=3)
    writer.resume(one)
    again = _append(writer, 2, second=10)
    findings = check_chains([one, two, three, again])
    assert [(f.seq, f.kind) for f in findings] == [(2, FindingKind.RETRIED), (3, FindingKind.NOT_REAPPENDED)]
    assert not any(f.tampering for f in findings)


def test_a_record_written_twice_is_a_crash_artefact_and_an_intact_chain_has_no_findings() -> None:
    writer = AuditChain("acme")
    records = [_append(writer, n, second=n) for n in range(1, 4)]
    assert check_chains(records) == []
    assert _kinds([records[0], records[1], records[1], records[2]]) == [(2, FindingKind.REPEATED)]


def test_gaps_reorders_and_altered_records_stay_alarms() -> None:
    writer = AuditChain("acme")
    r = [_append(writer, n, second=n) for n in range(1, 5)]
    assert _kinds([r[0], r[2], r[3]]) == [(3, FindingKind.MISSING)]
    assert _kinds([r[0], r[2], r[1], r[3]]) == [(3, FindingKind.MISSING), (2, FindingKind.OUT_OF_ORDER)]
    altered = r[1].model_copy(update={"actor": "mallory"})
    assert (2, FindingKind.ALTERED) in _kinds([r[0], altered, r[2], r[3]])
    assert _kinds(r[1:], from_genesis=False) == []
