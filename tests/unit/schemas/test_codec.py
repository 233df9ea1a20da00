"""The single-object codec: round trips, wire layout, and clear errors on bad input."""

from __future__ import annotations

import contextlib
import io
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastavro import schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.codec import AvroSingleObjectCodec, Codec, ConfluentCodec, make_codec
from schemas.errors import CodecError
from schemas.records import ALL_RECORDS, AlertEvent, Checkpoint, Incident, Record
from schemas.registry import SCHEMA_DIR, SchemaCatalog, default_catalog

Sample = Callable[[type[Record]], Record]


@pytest.fixture
def codec() -> AvroSingleObjectCodec:
    return AvroSingleObjectCodec()


@pytest.mark.parametrize("record_type", ALL_RECORDS, ids=lambda r: r.__name__)
def test_every_record_round_trips(codec: AvroSingleObjectCodec, sample: Sample, record_type: type[Record]) -> None:
    original = sample(record_type)
    data = codec.encode(original, topic="t")
    decoded = codec.decode(data, record_type, topic="t")
    assert decoded == original
    assert type(decoded) is record_type


def test_decoded_times_are_utc_aware(codec: AvroSingleObjectCodec, sample: Sample) -> None:
    event = sample(AlertEvent)
    decoded = codec.decode(codec.encode(event, topic="normalized"), AlertEvent, topic="normalized")
    assert decoded.received_at.tzinfo is not None
    assert decoded.received_at.utcoffset() is not None and decoded.received_at.utcoffset().total_seconds() == 0
    # a +08:00 time survives as the same instant
    assert decoded.metrics.first_occur == event.metrics.first_occur


@pytest.mark.parametrize("record_type", ALL_RECORDS, ids=lambda r: r.__name__)
def test_header_is_marker_and_crc64_of_canonical_form(
    codec: AvroSingleObjectCodec, sample: Sample, record_type: type[Record]
) -> None:
    data = codec.encode(sample(record_type), topic="t")
    assert data[:2] == b"\xc3\x01"
    canonical = to_parsing_canonical_form(default_catalog().current(record_type).parsed)
    assert data[2:10] == bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def test_body_is_plain_avro_binary(codec: AvroSingleObjectCodec, sample: Sample) -> None:
    """Any Avro library can read the body after the 10-byte header."""
    event = sample(AlertEvent)
    body = io.BytesIO()
    schemaless_writer(body, default_catalog().current(AlertEvent).parsed, event.to_avro())
    assert codec.encode(event, topic="normalized")[10:] == body.getvalue()


def test_garbage_is_rejected_with_its_first_bytes(codec: AvroSingleObjectCodec) -> None:
    with pytest.raises(CodecError, match=r"not an Avro single-object message.*7b22616c") as info:
        codec.decode(b'{"alert": "x"}', AlertEvent, topic="normalized")
    assert info.value.retriable is False


def test_empty_message_is_rejected(codec: AvroSingleObjectCodec) -> None:
    with pytest.raises(CodecError, match="got 0 bytes"):
        codec.decode(b"", AlertEvent, topic="normalized")


def test_unknown_fingerprint_is_named_in_hex(codec: AvroSingleObjectCodec, sample: Sample) -> None:
    data = codec.encode(sample(AlertEvent), topic="normalized")
    forged = data[:2] + bytes.fromhex("0011223344556677") + data[10:]
    with pytest.raises(CodecError, match="unknown writer schema fingerprint 0011223344556677") as info:
        codec.decode(forged, AlertEvent, topic="normalized")
    assert info.value.retriable is False


def test_truncated_body_is_rejected(codec: AvroSingleObjectCodec, sample: Sample) -> None:
    data = codec.encode(sample(AlertEvent), topic="normalized")
    for cut in (11, len(data) // 2, len(data) - 1):
        with pytest.raises(CodecError, match=r"corrupt or truncated rcaflow\.AlertEvent"):
            codec.decode(data[:cut], AlertEvent, topic="normalized")


def test_trailing_bytes_are_rejected(codec: AvroSingleObjectCodec, sample: Sample) -> None:
    data = codec.encode(sample(Checkpoint), topic="ingest-checkpoints")
    with pytest.raises(CodecError, match="3 unexpected trailing bytes"):
        codec.decode(data + b"\x00\x00\x00", Checkpoint, topic="ingest-checkpoints")


def test_reading_as_the_wrong_record_type_is_rejected(codec: AvroSingleObjectCodec, sample: Sample) -> None:
    data = codec.encode(sample(Incident), topic="incidents")
    with pytest.raises(CodecError, match=r"written as rcaflow.Incident \(current\), not as rcaflow.AlertEvent"):
        codec.decode(data, AlertEvent, topic="incidents")


def test_valid_avro_that_fails_validation_names_the_field(sample: Sample, tmp_path: Path) -> None:
    """If a schema and its record drift (here: severity made nullable), decode says which field broke."""
    for path in SCHEMA_DIR.glob("*.avsc"):
        text = path.read_text(encoding="utf-8")
        if path.name == "rcaflow.AlertEvent.avsc":
            schema = json.loads(text)
            for field in schema["fields"]:
                if field["name"] == "severity":
                    field["type"], field["default"] = ["null", "string"], None
            text = json.dumps(schema)
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    drifted = AvroSingleObjectCodec(SchemaCatalog(tmp_path, history_dir=None))
    datum = sample(AlertEvent).to_avro() | {"severity": None}
    version = drifted._catalog.current(AlertEvent)
    body = io.BytesIO()
    schemaless_writer(body, version.parsed, datum)
    with pytest.raises(CodecError, match=r"not a valid AlertEvent: severity: Input should be a valid string"):
        drifted.decode(b"\xc3\x01" + version.fingerprint + body.getvalue(), AlertEvent, topic="normalized")


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_unencodable_record_raises_codec_error(codec: AvroSingleObjectCodec, sample: Sample) -> None:
    """Only an unvalidated record can be unencodable; it must fail loudly with the record named."""
    broken = Incident.model_construct(**(dict(sample(Incident)) | {"count": "three"}))
    with pytest.raises(CodecError, match=r"cannot encode Incident as rcaflow\.Incident"):
        codec.encode(broken, topic="incidents")


def test_random_bytes_after_a_valid_header_never_escape_as_other_errors(
    codec: AvroSingleObjectCodec, sample: Sample
) -> None:
    rng = random.Random(1234)
    header = codec.encode(sample(AlertEvent), topic="t")[:10]
    for _ in range(500):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        with contextlib.suppress(CodecError):
            codec.decode(header + body, AlertEvent, topic="t")


def test_naive_datetimes_are_read_back_as_utc(codec: AvroSingleObjectCodec, sample: Sample) -> None:
    """fastavro treats a naive datetime as UTC; what comes back is aware, same wall clock."""
    event = sample(AlertEvent).model_copy(update={"received_at": datetime(2025, 9, 23, 1, 2, 3)})
    decoded = codec.decode(codec.encode(event, topic="t"), AlertEvent, topic="t")
    assert decoded.received_at == datetime(2025, 9, 23, 1, 2, 3, tzinfo=UTC)


def test_make_codec_without_registry_is_single_object() -> None:
    codec: Codec = make_codec(None)
    assert isinstance(codec, AvroSingleObjectCodec)


def test_make_codec_with_registry_is_confluent() -> None:
    codec = make_codec("http://user:secret@127.0.0.1:9", **{"max.retries": 0})
    assert isinstance(codec, ConfluentCodec)
