"""Routing fields from a mail's header block: Message-ID, sender address, decoded subject.

Alert mails come in UTF-8, GB2312/GBK/GB18030, as RFC 2047 words or as raw 8-bit
bytes; whatever arrives, the result is clean Unicode (Avro strings must be valid).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.header import Header, decode_header
from email.parser import BytesHeaderParser
from email.utils import parseaddr

_MAX_MESSAGE_ID_CHARS = 500
#: Tried in order for raw 8-bit header bytes; GB18030 is a superset of GB2312 and GBK.
_RAW_HEADER_CHARSETS = ("utf-8", "gb18030")


@dataclass(frozen=True, slots=True)
class MailHeaders:
    message_id: str | None
    sender: str | None
    subject: str | None


def parse_headers(raw: bytes) -> MailHeaders:
    """Parse a header block (or a whole mail: parsing stops at the blank line)."""
    msg = BytesHeaderParser().parsebytes(raw)
    sender_raw = msg.get("From")
    sender = parseaddr(header_text(sender_raw))[1].strip().lower() if sender_raw is not None else ""
    subject_raw = msg.get("Subject")
    return MailHeaders(
        message_id=clean_message_id(msg.get("Message-ID")),
        sender=sender or None,
        subject=header_text(subject_raw) if subject_raw is not None else None,
    )


def header_text(value: object) -> str:
    """Decode RFC 2047 words and raw 8-bit bytes into one line of Unicode."""
    source: str | Header = value if isinstance(value, Header) else _undo_surrogates(str(value))
    try:
        parts = decode_header(source)
    except (LookupError, UnicodeError, ValueError):
        return " ".join(str(value).split())
    pieces: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            pieces.append(chunk)
        else:
            pieces.append(_decode_bytes(chunk, charset))
    # decode_header drops the space between an encoded word and plain text; mend it like make_header.
    text = ""
    for piece in pieces:
        if text and not text[-1].isspace() and not piece[:1].isspace() and len(parts) > 1:
            text += " "
        text += piece
    return " ".join(text.split())


def _decode_bytes(chunk: bytes, charset: str | None) -> str:
    if charset and charset not in ("unknown-8bit", "us-ascii"):
        try:
            return chunk.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    for guess in ("ascii", *_RAW_HEADER_CHARSETS):
        try:
            return chunk.decode(guess)
        except UnicodeDecodeError:
            continue
    return chunk.decode("utf-8", "replace")


def _undo_surrogates(text: str) -> str:
    # The parser keeps undecodable 8-bit bytes as lone surrogates; recover the bytes and guess.
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    return _decode_bytes(text.encode("utf-8", "surrogateescape"), None)


def clean_message_id(value: object) -> str | None:
    """The Message-ID without folding whitespace; absurdly long ones are hashed to stay a sane key."""
    if value is None:
        return None
    text = "".join(header_text(value).split())
    if not text:
        return None
    if len(text) > _MAX_MESSAGE_ID_CHARS:
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text


def derived_message_id(data: bytes) -> str:
    """A stable id for mail without Message-ID, so a re-read copy dedups against the first."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
