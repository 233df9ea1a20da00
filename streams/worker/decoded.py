"""The records this worker decoded last, by type and bytes: several agents read the same record.

dedup and audit-ingest read every alert on normalized; decide-route and decide the same analysis (forwarded
as it is); pending, notify-outcomes and audit-actions every action; the audit agent every audited record
again (routed as it is). Decoding (fastavro, then pydantic validation) was the largest item left in the
worker's profile under a backlog, about a tenth of its CPU. Records are immutable (``Record`` is a frozen
model), so agents can share one decoded instance.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar, cast

from schemas.records import Record

R = TypeVar("R", bound=Record)

#: Records kept: the readers of one record take it within a few polls of each other.
KEPT = 1024
#: Larger values (mails on raw-mail, up to 11 MiB) are read by one agent only: not kept.
MAX_KEPT_BYTES = 64 * 1024


class DecodedRecords:
    """A small LRU of decoded records, keyed by record type and the exact bytes (never by position)."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._records: OrderedDict[tuple[type[Record], bytes], Record] = OrderedDict()

    def decode(self, data: bytes, record_type: type[R], decode: Callable[[], R]) -> R:
        """The record in ``data``: the one decoded before for the same type and bytes, else ``decode()``.

        Only successes are kept: bytes that fail to decode fail again, each time with their own error.
        """
        if type(data) is not bytes or len(data) > MAX_KEPT_BYTES:
            return decode()
        key = (record_type, data)
        record = self._records.get(key)
        if record is not None:
            self._records.move_to_end(key)
            return cast(R, record)
        decoded = decode()
        self._records[key] = decoded
        if len(self._records) > self._kept:
            self._records.popitem(last=False)
        return decoded
