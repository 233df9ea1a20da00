"""The worker shares one decoded record between the agents that read the same bytes, never across types."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from producers.mail import parse_mail
from schemas.codec import make_codec
from schemas.errors import CodecError
from schemas.records import AlertEvent, EventSource, Incident, SourceKind
from streams.worker.decoded import DecodedRecords


def test_bytes_decoded_as_one_type_are_still_refused_as_another(samples_dir: Path) -> None:
    codec = make_codec(None)
    alert = parse_mail((samples_dir / "etcd_latency.eml").read_bytes(), tenant="t", received_at=datetime.now(UTC),
                       source=EventSource(kind=SourceKind.FILE)).events[0]
    data = codec.encode(alert, topic="normalized")
    records = DecodedRecords()
    first = records.decode(data, AlertEvent, lambda: codec.decode(data, AlertEvent, topic="normalized"))
    again = records.decode(bytes(data), AlertEvent, lambda: codec.decode(data, AlertEvent, topic="normalized"))
    assert first == alert and again == alert
    # The dedup agent reads an alert; an agent expecting an incident must be told these bytes are not one.
    with pytest.raises(CodecError):
        records.decode(data, Incident, lambda: codec.decode(data, Incident, topic="incidents"))

