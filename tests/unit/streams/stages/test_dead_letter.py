"""The dead letter keeps what the stage could not use: whole when it fits, cut with size and SHA-256 when not."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from schemas.codec import AvroSingleObjectCodec
from schemas.errors import CodecError
from schemas.limits import topic_max_record_bytes
from schemas.records import DeadLetter
from streams.stages.core import Position, StageContext, dead_letter, dead_letter_payload_limit

CODEC = AvroSingleObjectCodec()
WHERE = Position("raw-mail", 2, 17, b"acme:<m@x>")
CONTEXT = StageContext(clock=lambda: datetime(2026, 11, 25, tzinfo=UTC))


BAD_BYTES = CodecError("bad bytes")


def _letter(payload: bytes, exc: BaseException = BAD_BYTES, **kwargs: int) -> DeadLetter:
    record = dead_letter("normalize", payload, WHERE, exc, tenant="acme", context=CONTEXT, **kwargs).record
    assert isinstance(record, DeadLetter)
    return record


def test_a_payload_that_fits_is_kept_whole_with_its_position_size_and_hash() -> None:
    letter = _letter(b"\x00poison")
    assert (letter.stage, letter.source_topic, letter.partition, letter.offset, letter.key) == (
        "normalize", "raw-mail", 2, 17, b"acme:<m@x>")
    assert letter.payload == b"\x00poison" and not letter.truncated
    assert letter.payload_size == 7 and letter.payload_sha256 == hashlib.sha256(b"\x00poison").hexdigest()
    assert letter.reason == "bad bytes" and letter.error_type == "CodecError"


def test_a_payload_over_the_limit_is_cut_and_the_record_fits_the_dead_letter_topic() -> None:
    payload = bytes(range(256)) * (dead_letter_payload_limit() // 256 + 100)
    letter = _letter(payload)
    assert letter.truncated and len(letter.payload) == dead_letter_payload_limit()
    assert payload.startswith(letter.payload)
    assert letter.payload_size == len(payload) and letter.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert len(CODEC.encode(letter, topic="dead-letter")) <= topic_max_record_bytes("dead-letter")


def test_a_smaller_limit_cuts_further() -> None:
    letter = _letter(b"x" * 1000, max_payload_bytes=100)
    assert letter.truncated and letter.payload == b"x" * 100 and letter.payload_size == 1000


def test_a_reason_quoting_undecodable_text_still_encodes() -> None:
    letter = _letter(b"mail", ValueError("subject '\ud83d' is odd"))
    assert "\ud83d" not in letter.reason
    assert CODEC.decode(CODEC.encode(letter, topic="dead-letter"), DeadLetter, topic="dead-letter") == letter
