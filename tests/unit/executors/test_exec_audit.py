"""The audit chain: an untouched chain verifies; each kind of tampering is found and named by tenant and seq."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest

from executors.audit import GENESIS_HASH, AuditChain, AuditChains, AuditError, ProblemKind, compute_hash, verify
from schemas.codec import AvroSingleObjectCodec
from schemas.records import AuditKind, AuditRecord

T0 = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)


def ticking() -> Iterator[datetime]:
    moment = T0
    while True:
        yield moment
        moment += timedelta(seconds=1, microseconds=7)


def chain_of(tenant: str, n: int) -> list[AuditRecord]:
    clock = ticking()
    chain = AuditChain(tenant, clock=lambda: next(clock))
    return [
        chain.append(kind=AuditKind.EXECUTION, actor="executor", subject_id=f"act-{i}",
                     action="k8s.rollout_restart", detail={"state": "succeeded", "namespace": "insight-system"})
        for i in range(1, n + 1)
    ]


def messages(records: list[AuditRecord]) -> list[str]:
    return [str(p) for p in verify(records)]


def test_untouched_chains_verify_even_interleaved() -> None:
    acme, globex = chain_of("acme", 5), chain_of("globex", 3)
    interleaved = [acme[0], globex[0], acme[1], acme[2], globex[1], acme[3], globex[2], acme[4]]
    assert verify(interleaved) == []
    assert acme[0].seq == 1 and acme[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in pairwise(acme))


def test_records_survive_an_avro_round_trip() -> None:
    codec = AvroSingleObjectCodec()
    clock = iter([datetime(2026, 11, 25, 18, 0, 0, 999999, tzinfo=timezone(timedelta(hours=8)))])
    record = AuditChain("acme", clock=lambda: next(clock)).append(
        kind=AuditKind.APPROVAL, actor="slack:U2CERLKJA", subject_id="act-1", action="approve", detail={"中文": "值"}
    )
    decoded = codec.decode(codec.encode(record, topic="audit"), AuditRecord, topic="audit")
    assert verify([decoded]) == []
    assert compute_hash(decoded) == record.hash


def test_altering_a_detail_is_found() -> None:
    records = chain_of("acme", 4)
    records[2] = records[2].model_copy(update={"detail": {**records[2].detail, "state": "failed"}})
    problems = verify(records)
    assert [(p.tenant, p.seq, p.kind) for p in problems] == [("acme", 3, ProblemKind.ALTERED)]
    assert "tenant 'acme' seq 3" in str(problems[0])


def test_altering_and_rehashing_a_record_breaks_the_next_link() -> None:
    records = chain_of("acme", 4)
    forged = records[1].model_copy(update={"actor": "mallory"})
    records[1] = forged.model_copy(update={"hash": compute_hash(forged)})
    problems = verify(records)
    assert [(p.seq, p.kind) for p in problems] == [(3, ProblemKind.BROKEN_LINK)]
    assert "prev_hash does not match the hash of seq 2" in str(problems[0])


def test_deleting_a_record_is_found() -> None:
    records = chain_of("acme", 5)
    del records[2]
    assert messages(records) == ["tenant 'acme' seq 4: seq 3 missing before it (records deleted)"]


def test_deleting_the_first_record_is_found() -> None:
    assert messages(chain_of("acme", 3)[1:]) == ["tenant 'acme' seq 2: chain starts at seq 2, records 1..1 are missing"]
    assert verify(chain_of("acme", 3)[1:], from_genesis=False) == []


def test_reordering_is_found() -> None:
    r = chain_of("acme", 4)
    problems = verify([r[0], r[2], r[1], r[3]])
    assert {(p.seq, p.kind) for p in problems} == {(3, ProblemKind.MISSING), (2, ProblemKind.OUT_OF_ORDER)}
    assert any("tenant 'acme' seq 2: comes after seq 3" in str(p) for p in problems)


def test_duplicated_record_is_found() -> None:
    r = chain_of("acme", 3)
    assert messages([r[0], r[1], r[1], r[2]]) == ["tenant 'acme' seq 2: seq appears more than once"]


def test_swapping_tenants_is_found_in_both_chains() -> None:
    acme, globex = chain_of("acme", 3), chain_of("globex", 3)
    moved = acme[1].model_copy(update={"tenant": "globex"})
    problems = verify([acme[0], moved, acme[2], *globex])
    found = {(p.tenant, p.seq, p.kind) for p in problems}
    assert ("globex", 2, ProblemKind.ALTERED) in found
    assert ("acme", 3, ProblemKind.MISSING) in found
    assert any(p.tenant == "globex" and p.kind is ProblemKind.MISSING for p in problems)


def test_a_fork_by_two_writers_shows_as_a_duplicate_seq() -> None:
    base = chain_of("acme", 2)
    a, b = AuditChain("acme"), AuditChain("acme")
    a.resume(base[-1])
    b.resume(base[-1])
    first = a.append(kind=AuditKind.EXECUTION, actor="executor-1", subject_id="x", action="run")
    second = b.append(kind=AuditKind.EXECUTION, actor="executor-2", subject_id="y", action="run")
    assert [(p.seq, p.kind) for p in verify([*base, first, second])] == [(3, ProblemKind.DUPLICATE)]


def test_resume_continues_the_chain_after_a_restart() -> None:
    records = chain_of("acme", 3)
    restarted = AuditChain("acme")
    restarted.resume(records[-1])
    nxt = restarted.append(kind=AuditKind.ROLLBACK, actor="executor", subject_id="act-3", action="k8s.scale")
    assert nxt.seq == 4 and nxt.prev_hash == records[-1].hash
    assert verify([*records, nxt]) == []
    fresh = AuditChain("acme")
    fresh.resume(None)
    assert fresh.append(kind=AuditKind.OTHER, actor="a", subject_id="s", action="x").seq == 1


def test_resume_refuses_a_foreign_or_altered_record() -> None:
    last = chain_of("acme", 2)[-1]
    with pytest.raises(AuditError, match="tenant 'globex'"):
        AuditChain("globex").resume(last)
    with pytest.raises(AuditError, match="seq 2: its hash does not match"):
        AuditChain("acme").resume(last.model_copy(update={"action": "other"}))


def test_chains_are_per_tenant() -> None:
    chains = AuditChains()
    a1 = chains.for_tenant("acme").append(kind=AuditKind.INGEST, actor="imap", subject_id="m1", action="received")
    b1 = chains.for_tenant("globex").append(kind=AuditKind.INGEST, actor="imap", subject_id="m2", action="received")
    a2 = chains.for_tenant("acme").append(kind=AuditKind.INGEST, actor="imap", subject_id="m3", action="received")
    assert (a1.seq, b1.seq, a2.seq) == (1, 1, 2)
    assert verify([a1, b1, a2]) == []
