"""Tamper-evident audit: a per-tenant hash chain of ``AuditRecord``s, and a verifier for it.

``hash = sha256(prev_hash + canonical JSON of the record without "hash")``. The
canonical form writes ``at`` as epoch milliseconds, exactly what Avro's
``timestamp-millis`` keeps, so a record read back from the ``audit`` topic
verifies bit for bit. A chain needs one writer per tenant (the ``audit`` topic
is keyed by tenant, so one partition orders it); two writers would fork it,
and :func:`verify` would report the fork as a duplicated seq.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from executors.errors import ExecutorError
from schemas.records import AuditKind, AuditRecord

logger = logging.getLogger(__name__)

#: ``prev_hash`` of the first record of every tenant's chain.
GENESIS_HASH = "0" * 64
FIRST_SEQ = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AuditError(ExecutorError):
    """The chain cannot continue from the given record (wrong tenant, or the record itself is altered)."""


def to_millis(moment: datetime) -> datetime:
    """``moment`` in UTC truncated to milliseconds: what survives an Avro round trip."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def canonical_body(record: AuditRecord) -> bytes:
    """The bytes that are hashed: every field except ``hash``, sorted keys, no whitespace, UTF-8."""
    body: dict[str, Any] = record.model_dump(mode="json", exclude={"hash"})
    # Integer arithmetic: float timestamps can land one millisecond off.
    body["at"] = (to_millis(record.at) - _EPOCH) // timedelta(milliseconds=1)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def compute_hash(record: AuditRecord) -> str:
    return hashlib.sha256(record.prev_hash.encode("ascii") + canonical_body(record)).hexdigest()


class AuditChain:
    """Builds one tenant's chain. Not thread-safe; ``append`` has no await, so it is atomic in asyncio."""

    def __init__(self, tenant: str, *, clock: Callable[[], datetime] | None = None) -> None:
        self.tenant = tenant
        self._clock = clock or (lambda: datetime.now(UTC))
        self._seq = FIRST_SEQ - 1
        self._head = GENESIS_HASH

    @property
    def seq(self) -> int:
        """Seq of the last record appended (``0`` for an empty chain)."""
        return self._seq

    @property
    def head(self) -> str:
        """Hash of the last record appended (:data:`GENESIS_HASH` for an empty chain)."""
        return self._head

    def resume(self, last: AuditRecord | None) -> None:
        """Continue after ``last`` (the newest record read back from the audit topic), or from genesis."""
        if last is None:
            self._seq, self._head = FIRST_SEQ - 1, GENESIS_HASH
            return
        if last.tenant != self.tenant:
            raise AuditError(f"cannot resume the chain of tenant {self.tenant!r} from a record of {last.tenant!r}")
        if compute_hash(last) != last.hash:
            raise AuditError(f"cannot resume tenant {self.tenant!r} from seq {last.seq}: its hash does not match")
        self._seq, self._head = last.seq, last.hash

    def append(
        self,
        *,
        kind: AuditKind,
        actor: str,
        subject_id: str,
        action: str,
        detail: Mapping[str, str] | None = None,
        at: datetime | None = None,
    ) -> AuditRecord:
        """The next record of the chain; the caller produces it to the ``audit`` topic."""
        unsigned = AuditRecord(
            tenant=self.tenant,
            seq=self._seq + 1,
            at=to_millis(at or self._clock()),
            kind=kind,
            actor=actor,
            subject_id=subject_id,
            action=action,
            detail=dict(detail or {}),
            prev_hash=self._head,
            hash="",
        )
        record = unsigned.model_copy(update={"hash": compute_hash(unsigned)})
        self._seq, self._head = record.seq, record.hash
        return record


class AuditChains:
    """One :class:`AuditChain` per tenant, created on first use."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock
        self._chains: dict[str, AuditChain] = {}

    def for_tenant(self, tenant: str, *, last: AuditRecord | None = None) -> AuditChain:
        """The tenant's chain; ``last`` resumes it when it is created (ignored afterwards)."""
        chain = self._chains.get(tenant)
        if chain is None:
            chain = self._chains[tenant] = AuditChain(tenant, clock=self._clock)
            chain.resume(last)
        return chain


class ProblemKind(StrEnum):
    ALTERED = "altered"
    MISSING = "missing"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    BROKEN_LINK = "broken_link"


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """One finding of :func:`verify`; ``message`` names the tenant and the seq."""

    tenant: str
    seq: int
    kind: ProblemKind
    message: str

    def __str__(self) -> str:
        return self.message


def verify(records: Iterable[AuditRecord], *, from_genesis: bool = True) -> list[AuditProblem]:
    """Check each tenant's chain in the order given; an untouched chain yields ``[]``.

    Finds altered records (hash mismatch: any field, tenant included), gaps
    (deleted records), duplicated seqs (replays, forks), records out of order
    and broken ``prev_hash`` links. With ``from_genesis`` each tenant's first
    record must be seq 1 on the genesis hash; pass ``False`` to check a window
    that starts mid-chain. Deleting the newest records is invisible without an
    outside anchor (compare the last hash with one stored elsewhere).
    """
    problems: list[AuditProblem] = []
    last: dict[str, AuditRecord] = {}

    def report(record: AuditRecord, kind: ProblemKind, text: str) -> None:
        message = f"tenant {record.tenant!r} seq {record.seq}: {text}"
        problems.append(AuditProblem(record.tenant, record.seq, kind, message))

    for record in records:
        if compute_hash(record) != record.hash:
            report(record, ProblemKind.ALTERED, "content does not match its hash (record altered)")
        previous = last.get(record.tenant)
        if previous is None:
            if from_genesis and record.seq != FIRST_SEQ:
                report(record, ProblemKind.MISSING, f"chain starts at seq {record.seq}, records {FIRST_SEQ}.."
                       f"{record.seq - 1} are missing")
            elif from_genesis and record.prev_hash != GENESIS_HASH:
                report(record, ProblemKind.BROKEN_LINK, "first record does not link to the genesis hash")
            last[record.tenant] = record
            continue
        if record.seq == previous.seq:
            report(record, ProblemKind.DUPLICATE, "seq appears more than once")
            continue  # keep comparing against the first copy
        if record.seq < previous.seq:
            report(record, ProblemKind.OUT_OF_ORDER, f"comes after seq {previous.seq} (records reordered)")
            continue
        if record.seq > previous.seq + 1:
            missing = (f"seq {previous.seq + 1}" if record.seq == previous.seq + 2
                       else f"seqs {previous.seq + 1}..{record.seq - 1}")
            report(record, ProblemKind.MISSING, f"{missing} missing before it (records deleted)")
        elif record.prev_hash != previous.hash:
            report(record, ProblemKind.BROKEN_LINK, f"prev_hash does not match the hash of seq {previous.seq}")
        last[record.tenant] = record
    if problems:
        logger.warning("audit verification found %d problem(s)", len(problems))
    return problems
