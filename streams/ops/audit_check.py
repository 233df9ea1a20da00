"""What ``rcaflow audit verify`` concludes about each tenant's chain: tampering, or what a crashed writer leaves.

The chain's single writer (the worker's ``audit`` agent) sends a record before it stores the new head,
so a crash in between makes it append the same step again from the old head once the input is
re-delivered: a *fork at the same predecessor* whose records say exactly what the abandoned ones said
(same step, same content id in ``detail.source``; only ``at`` and so the hash differ). A producer
retry can also leave the *same record twice*. Both are crash artefacts: nothing was altered and no
step is lost, so they are reported as warnings. Everything the chain cannot explain that way (a hash
that does not match, a fork whose content differs, a missing seq, a broken link, records out of
order) is tampering, or damage that needs a human just the same.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from executors.audit import FIRST_SEQ, GENESIS_HASH, compute_hash
from schemas.records import AuditRecord


class FindingKind(StrEnum):
    """A finding's kind; :data:`CRASH_ARTEFACTS` are harmless leftovers of a crash, the rest are alarms."""

    ALTERED = "altered"
    MISSING = "missing"
    BROKEN_LINK = "broken_link"
    OUT_OF_ORDER = "out_of_order"
    DUPLICATE = "duplicate"
    FORKED = "forked"
    REPEATED = "repeated"
    RETRIED = "retried"
    NOT_REAPPENDED = "not_reappended"


CRASH_ARTEFACTS = frozenset({FindingKind.REPEATED, FindingKind.RETRIED, FindingKind.NOT_REAPPENDED})


@dataclass(frozen=True, slots=True)
class Finding:
    """One observation about a tenant's chain at ``seq``; ``message`` names both and says what it means."""

    tenant: str
    seq: int
    kind: FindingKind
    message: str

    @property
    def tampering(self) -> bool:
        return self.kind not in CRASH_ARTEFACTS

    def __str__(self) -> str:
        return self.message


@dataclass
class _Chain:
    """One tenant's surviving branch, every record by hash, and the abandoned records a retry should repeat."""

    branch: list[AuditRecord] = field(default_factory=list)
    by_hash: dict[str, AuditRecord] = field(default_factory=dict)
    awaiting: deque[AuditRecord] = field(default_factory=deque)

    @property
    def tip(self) -> AuditRecord | None:
        return self.branch[-1] if self.branch else None

    def position(self, record: AuditRecord) -> int | None:
        """Where ``record`` sits on the surviving branch, if it does."""
        for index in range(len(self.branch) - 1, -1, -1):
            if self.branch[index].hash == record.hash:
                return index
        return None


def _step(record: AuditRecord) -> dict[str, Any]:
    """What a record says happened, without when it was written or where it was chained."""
    return record.model_dump(mode="json", exclude={"at", "hash", "prev_hash"})


def _source(record: AuditRecord) -> str:
    return record.detail.get("source", "?")


def check_chains(records: Iterable[AuditRecord], *, from_genesis: bool = True) -> list[Finding]:
    """Every finding about the chains in ``records`` (topic order), crash artefacts and alarms alike."""
    findings: list[Finding] = []
    chains: dict[str, _Chain] = {}

    def note(record: AuditRecord, kind: FindingKind, text: str) -> None:
        findings.append(Finding(record.tenant, record.seq, kind, f"tenant {record.tenant!r} seq {record.seq}: {text}"))

    for record in records:
        chain = chains.setdefault(record.tenant, _Chain())
        intact = compute_hash(record) == record.hash
        if not intact:
            note(record, FindingKind.ALTERED, "content does not match its hash (record altered)")
        elif record.hash in chain.by_hash:
            note(record, FindingKind.REPEATED, "crash artefact: the same record written again (a retried send); "
                                               "nothing altered, nothing missing")
            continue
        chain.by_hash.setdefault(record.hash, record)
        tip = chain.tip
        if tip is None:
            if from_genesis and record.seq != FIRST_SEQ:
                note(record, FindingKind.MISSING,
                     f"chain starts at seq {record.seq}, records {FIRST_SEQ}..{record.seq - 1} are missing")
            elif from_genesis and record.prev_hash != GENESIS_HASH:
                note(record, FindingKind.BROKEN_LINK, "first record does not link to the genesis hash")
            chain.branch.append(record)
            continue
        if record.prev_hash == tip.hash and record.seq == tip.seq + 1:
            if chain.awaiting and chain.awaiting[0].seq == record.seq:
                _compare_retry(chain.awaiting.popleft(), record, note, first=False)
            chain.branch.append(record)
            continue
        anchor = chain.by_hash.get(record.prev_hash)
        at = chain.position(anchor) if anchor is not None and intact else None
        if (anchor is not None and at is not None and at < len(chain.branch) - 1
                and record.seq == anchor.seq + 1 == chain.branch[at + 1].seq):
            _report_left_over(chain, findings)
            abandoned = chain.branch[at + 1:]
            _compare_retry(abandoned[0], record, note, first=True)
            chain.awaiting = deque(abandoned[1:])
            chain.branch = [*chain.branch[: at + 1], record]
            continue
        if record.seq == tip.seq:
            note(record, FindingKind.DUPLICATE, "seq appears more than once, and not as a retry from the same "
                                                "predecessor (two writers, or a forged record)")
            continue
        if record.seq < tip.seq:
            note(record, FindingKind.OUT_OF_ORDER, f"comes after seq {tip.seq} (records reordered)")
            continue
        if record.seq > tip.seq + 1:
            missing = f"seq {tip.seq + 1}" if record.seq == tip.seq + 2 else f"seqs {tip.seq + 1}..{record.seq - 1}"
            note(record, FindingKind.MISSING, f"{missing} missing before it (records deleted)")
        else:
            note(record, FindingKind.BROKEN_LINK, f"prev_hash does not match the hash of seq {tip.seq}")
        chain.branch.append(record)
    for chain in chains.values():
        _report_left_over(chain, findings)
    return findings


def _compare_retry(abandoned: AuditRecord, retry: AuditRecord, note: Any, *, first: bool) -> None:
    """A record re-appended after a crash must say exactly what the one it replaces said."""
    if _step(abandoned) == _step(retry):
        if first:
            note(retry, FindingKind.RETRIED,
                 f"crash artefact: re-appended from the same predecessor (seq {retry.seq - 1}) after a crash; "
                 f"the same step as the abandoned record (source {_source(retry)}), only its time differs")
        return
    note(retry, FindingKind.FORKED, f"forks the chain at seq {retry.seq - 1} with content that differs from the "
                                    "record it replaces (a forged or altered branch)")


def _report_left_over(chain: _Chain, findings: list[Finding]) -> None:
    """Abandoned records the retry has not repeated (yet): still on the topic and intact, but off the branch."""
    if not chain.awaiting:
        return
    first, last = chain.awaiting[0], chain.awaiting[-1]
    seqs = f"seq {first.seq}" if first.seq == last.seq else f"seqs {first.seq}..{last.seq}"
    findings.append(Finding(first.tenant, first.seq, FindingKind.NOT_REAPPENDED,
                            f"tenant {first.tenant!r} seq {first.seq}: crash artefact: {seqs} of a branch abandoned "
                            f"after a crash were not re-appended (yet); they are intact on the topic "
                            f"(sources {', '.join(_source(r) for r in chain.awaiting)[:300]})"))
    chain.awaiting.clear()
