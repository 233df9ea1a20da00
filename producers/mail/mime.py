"""RFC 822 bytes to decoded subject, Message-ID and body texts, with bounded work.

compat32 is used on purpose: MEASURED.md found it ~4x faster than
``policy.default`` for the same mail, and we decode headers ourselves anyway
(customer mails declare wrong charsets often enough that we need fallbacks).
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

from producers.mail.errors import MailParseError
from schemas.limits import MAX_MAIL_BYTES

BodyKind = Literal["html", "text"]

#: Charsets whose declared name is narrower than what senders really put in the bytes.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "big5": "big5hkscs",
    "ascii": "utf-8",
    "us-ascii": "utf-8",
    "iso-8859-1": "cp1252",
    "latin-1": "cp1252",
}


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_WS = re.compile(r"\s+")
_SINGLE_BYTE = frozenset(
    {"ascii", "us-ascii", "iso-8859-1", "latin-1", "latin1", "cp1252", "windows-1252", "iso-8859-15"}
)


@dataclass(frozen=True, slots=True)
class MimeLimits:
    """Bounds on the work one mail may cause; hostile input hits these, not our memory."""

    max_bytes: int = MAX_MAIL_BYTES  # schemas/limits.py: the chain of size limits
    max_parts: int = 64
    max_depth: int = 6


@dataclass(frozen=True, slots=True)
class Body:
    kind: BodyKind
    text: str


@dataclass(slots=True)
class DecodedMail:
    subject: str
    message_id: str
    #: Subjects of the mail and of every forwarded (message/rfc822) mail inside it.
    subjects: list[str] = field(default_factory=list)
    bodies: list[Body] = field(default_factory=list)
    #: The mail's own headers that say what kind of mail it is (lower-case names, see ``KIND_HEADERS``).
    headers: dict[str, str] = field(default_factory=dict)
    #: Content types of the mail's own parts (not those of a forwarded mail inside it), with their
    #: ``report-type``/``method`` parameter where they have one: "multipart/report;delivery-status".
    part_types: list[str] = field(default_factory=list)

    def of_kind(self, kind: BodyKind) -> list[str]:
        return [b.text for b in self.bodies if b.kind == kind]


#: Lone UTF-16 surrogates: text that no UTF-8 record can hold (UTF-7 and UTF-16 can decode to them).
_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_bytes(data: bytes, declared: str | None) -> str:
    """Declared charset first, then UTF-8, then GB18030; never fails (replacement chars last).

    A decoding that yields lone surrogates counts as failed: a mail declaring ``utf-7`` (or a lying
    ``utf-16``) can produce them, and the AlertEvent carrying such text could never be encoded.
    """
    tried: list[str] = []
    order = (declared, "utf-8", "gb18030")
    if declared and declared.strip().lower() in _SINGLE_BYTE:
        # Any byte string "decodes" as Latin-1; a sender that says so but writes
        # valid UTF-8 is a misconfigured sender, not a Western European one.
        order = ("utf-8", declared, "gb18030")
    for name in order:
        if not name:
            continue
        codec = _CHARSET_ALIASES.get(name.strip().lower(), name.strip().lower())
        if codec in tried:
            continue
        tried.append(codec)
        try:
            text = data.decode(codec)
        except (UnicodeError, LookupError):  # UnicodeError too: some codecs (idna, punycode) raise its base
            continue
        if _SURROGATE.search(text) is None:
            return text
    return data.decode("utf-8", errors="replace")


def decode_header_value(value: object) -> str:
    """RFC 2047 words and raw 8-bit headers (compat32 keeps those as surrogate escapes)."""
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        parts = email.header.decode_header(value)
    else:
        text = _FOLD.sub("", str(value))
        if "=?" not in text:
            return _WS.sub(" ", _unescape_raw(text)).strip()
        try:
            parts = email.header.decode_header(text)
        except (email.errors.HeaderParseError, ValueError):
            return _unescape_raw(text).strip()
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset))
        else:
            out.append(_unescape_raw(chunk))
    return _WS.sub(" ", "".join(out)).strip()


def _unescape_raw(text: str) -> str:
    try:
        raw = text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return decode_bytes(raw, None)


def decode_mail(raw: bytes, limits: MimeLimits) -> DecodedMail:
    if len(raw) > limits.max_bytes:
        raise MailParseError(f"mail is {len(raw)} bytes, over the {limits.max_bytes}-byte limit")
    msg = email.message_from_bytes(raw)
    subject = decode_header_value(msg.get("Subject"))
    message_id = decode_header_value(msg.get("Message-ID")).strip("<> ")
    if not message_id:
        # Stable across re-processing, so event ids stay deterministic without a Message-ID.
        message_id = "sha256:" + hashlib.sha256(raw).hexdigest()[:32]
    out = DecodedMail(subject=subject, message_id=message_id, subjects=[subject])
    for name in KIND_HEADERS:
        value = msg.get(name)
        if value is not None:
            out.headers[name] = decode_header_value(value)[:300]
    _walk(msg, out, limits, depth=0, budget=[limits.max_parts])
    return out


#: Headers that tell an auto-reply, a bounce or a mailing-list mail from an alert (RFC 3834, RFC 2369).
KIND_HEADERS = ("from", "auto-submitted", "x-autoreply", "x-autorespond", "x-auto-reply", "precedence",
                "list-unsubscribe", "list-id", "x-ms-exchange-generated-message-source")


def _part_type(msg: email.message.Message, ctype: str) -> str:
    detail = msg.get_param("report-type") or msg.get_param("method")
    return f"{ctype};{str(detail).lower()[:40]}" if isinstance(detail, str) else ctype


def _walk(msg: email.message.Message, out: DecodedMail, limits: MimeLimits, depth: int, budget: list[int],
          forwarded: bool = False) -> None:
    if depth > limits.max_depth or budget[0] <= 0:
        return
    budget[0] -= 1
    ctype = msg.get_content_type()
    if not forwarded:
        out.part_types.append(_part_type(msg, ctype))
    if ctype == "message/rfc822" or (ctype.startswith("message/") and msg.is_multipart()):
        payload = msg.get_payload()
        inner = payload if isinstance(payload, list) else [payload]
        for sub in inner:
            if isinstance(sub, email.message.Message):
                out.subjects.append(decode_header_value(sub.get("Subject")))
                _walk(sub, out, limits, depth + 1, budget, forwarded=True)
        return
    if msg.is_multipart():
        payload = msg.get_payload()
        if not isinstance(payload, list):
            return
        parts = [p for p in payload if isinstance(p, email.message.Message)]
        if ctype == "multipart/alternative":
            # Prefer the richest alternative (HTML) but keep text when there is no HTML.
            htmls = [p for p in parts if p.get_content_type() == "text/html"]
            others = [p for p in parts if p.get_content_type() not in ("text/html", "text/plain")]
            chosen = htmls or [p for p in parts if p.get_content_type() == "text/plain"]
            parts = chosen + others
        for part in parts:
            _walk(part, out, limits, depth + 1, budget, forwarded)
        return
    if ctype not in ("text/html", "text/plain") and msg.get_content_maintype() != "text":
        return
    if msg.get_content_disposition() == "attachment" and ctype not in ("text/html", "text/plain"):
        return
    data = msg.get_payload(decode=True)
    if not isinstance(data, bytes) or not data:
        return
    text = decode_bytes(data, msg.get_content_charset())
    kind: BodyKind = "html" if ctype == "text/html" or _looks_like_html(text) else "text"
    out.bodies.append(Body(kind, text))


_HTML_SNIFF = re.compile(r"<\s*(html|table|body|div|br|p)\b", re.IGNORECASE)


def _looks_like_html(text: str) -> bool:
    """Some senders label HTML as text/plain; a table inside it is still a table."""
    return bool(_HTML_SNIFF.search(text[:4096]))
