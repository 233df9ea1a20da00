"""What the sustained-load benchmark sends: which tenant and which alert each mail carries, and when.

Real alert mail repeats itself: a firing alert is mailed again every few minutes until it resolves, so most
mails are repeats of an alert still inside its dedup window (the issue asks for a realistic ratio, e.g.
60-80 %). A repeat is drawn from the tenant's most recent alerts (all opened within the run, so well inside
the 1 h window of ``jenkins_restart``); a new alert gets a workload of its own and so a fingerprint and an
incident of its own. The plan is seeded, so two runs with the same options send the same sequence.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.records import RawMail, SourceKind
from tests.faults import mails

#: How many of a tenant's latest alerts a repeat is drawn from (alerts that keep firing).
RECENT_ALERTS = 50


@dataclass(frozen=True, slots=True)
class PlannedMail:
    """Mail number ``index``: ``tenant``'s alert number ``alert`` (a workload of its own); ``repeat`` if sent before."""

    index: int
    tenant: str
    alert: int
    repeat: bool


class MailPlan:
    """Round-robin over the tenants; per mail a repeat with probability ``dup_ratio``, else a new alert."""

    def __init__(self, tenants: Sequence[str], dup_ratio: float, *, seed: int = 18,
                 recent: int = RECENT_ALERTS) -> None:
        if not tenants:
            raise ValueError("at least one tenant")
        if not 0.0 <= dup_ratio < 1.0:
            raise ValueError("dup_ratio must be in [0, 1)")
        self.tenants = tuple(tenants)
        self.dup_ratio = dup_ratio
        self._random = random.Random(seed)
        self._recent: dict[str, deque[int]] = {t: deque(maxlen=recent) for t in self.tenants}
        self._next_alert = 0
        self._index = 0

    def next(self) -> PlannedMail:
        tenant = self.tenants[self._index % len(self.tenants)]
        recent = self._recent[tenant]
        if recent and self._random.random() < self.dup_ratio:
            planned = PlannedMail(self._index, tenant, self._random.choice(recent), True)
        else:
            planned = PlannedMail(self._index, tenant, self._next_alert, False)
            recent.append(self._next_alert)
            self._next_alert += 1
        self._index += 1
        return planned


def raw_mail(run: str, planned: PlannedMail) -> tuple[str, RawMail]:
    """(key, record) as the IMAP producer puts a mail on raw-mail: one JenkinsRestarted alert per mail
    (``tests.faults.mails``), its workload ``jenkins-<run>-<alert>``, a Message-ID of its own (a repeat is a
    new mail about the same alert, not a redelivery)."""
    raw = mails.normal_mail(run, planned.alert)
    message_id = mails.message_id_of(raw)
    record = RawMail(tenant=planned.tenant, message_id=message_id, mailbox="load", source=SourceKind.FILE,
                     received_at=datetime.now(UTC), raw=raw)
    return f"{planned.tenant}:{message_id}", record


def run_id() -> str:
    """A workload-name-safe id that keeps one run's alerts apart from another's on a shared broker."""
    return uuid.uuid4().hex[:6]
