"""What a mail costs at the intake: the number of alerts the worker will read from it, at least one.

Ingest quotas and the intake budget (:mod:`producers.quota`) are counted in alerts per minute. A digest mail
(one table of many alerts) becomes many alerts in the worker, so charging it one token would let a tenant pass
its quota by batching alerts into digests. The count comes from the worker's own parser (``parse_mail`` with
the same templates), so the intake sees what the worker will get. A mail the parser refuses (unreadable, not an
alert) still costs one: the intake never refuses or drops a mail for its content; the worker dead-letters it.

Parsing is CPU work (about a millisecond for a sample mail, more for a big digest): async callers run
:meth:`MailCost.__call__` in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from producers.mail.errors import MailParseError
from producers.mail.parse import ParseLimits, parse_mail
from producers.mail.registry import TemplateRegistry
from schemas.records import EventSource

__all__ = ["MailCost"]

#: Neither the tenant nor the time changes how many alerts a mail holds; the parser only needs values.
_COUNT_TENANT = "intake"
_COUNT_AT = datetime(2000, 1, 1, tzinfo=UTC)
_COUNT_SOURCE = EventSource()


@dataclass(frozen=True, slots=True)
class MailCost:
    """``cost(raw)``: the alerts in ``raw`` as the worker will parse them (with ``registry``), at least 1.

    ``registry`` None: the bundled templates (what the worker uses unless ``mail.templates`` adds its own).
    Thread-safe: parsing keeps no state between calls.
    """

    registry: TemplateRegistry | None = None
    limits: ParseLimits = field(default_factory=ParseLimits)

    def __call__(self, raw: bytes) -> int:
        try:
            parsed = parse_mail(raw, tenant=_COUNT_TENANT, received_at=_COUNT_AT, source=_COUNT_SOURCE,
                                registry=self.registry, limits=self.limits)
        except MailParseError:  # NotAnAlertError included: the worker dead-letters it; the intake still takes it
            return 1
        return max(1, len(parsed.events))
