"""Whatever bytes arrive, parse_mail answers with events or a MailParseError, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.mail import MailParseError, ParsedMail, parse_mail
from schemas.records import EventSource

NOW = datetime(2026, 11, 25, tzinfo=UTC)
HEADERS = [
    b"Subject: Control Cluster Details\r\nContent-Type: text/html; charset=gb2312\r\n\r\n",
    b"Subject: =?utf-8?B?5ZGK6K2m?=\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    b"Subject: [FIRING:1] X\r\nContent-Type: text/plain; charset=big5\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\n",
    b"Content-Type: message/rfc822\r\n\r\nContent-Type: text/html; charset=nonsense\r\n\r\n",
]
FRAGMENTS = [
    b"<table>", b"<tr>", b"<th>\xe5\x91\x8a\xe8\xad\xa6\xe5\x90\x8d\xe7\xa7\xb0</th>", b"<td>", b"</td>",
    b"<th>severity</th>", b"</table>", b"<h3>\xe5\x91\x8a\xe8\xad\xa6\xe4\xb8\xad</h3>", b"<script>",
    b"alertname = X<br>", b"Labels<br>", b"\xe8\xa7\x84\xe5\x88\x99\xe5\x90\x8d\xe7\xa7\xb0: Y\n", b"=?",
    b"\x00", b"\xff\xfe", b"<!--", b"]]>", b"<?xml version='1.0' encoding='utf-8'?>", b"=\r\n", b"--b--",
]  # fmt: skip


def _check(raw: bytes) -> None:
    try:
        result = parse_mail(raw, tenant="t", received_at=NOW, source=EventSource())
    except MailParseError as exc:
        assert exc.message
        assert not exc.message.startswith("parser error"), exc.message  # no internal bug was hit
    else:
        assert isinstance(result, ParsedMail) and result.events


# A generous per-input bound: catastrophic backtracking or quadratic HTML handling would exceed it.
@settings(max_examples=300, deadline=timedelta(seconds=5), database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_mail_parse_error(raw: bytes) -> None:
    _check(raw)


# A generous per-input bound: catastrophic backtracking or quadratic HTML handling would exceed it.
@settings(max_examples=300, deadline=timedelta(seconds=5), database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HEADERS), st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=32), max_size=60))
def test_mail_shaped_garbage_raises_only_mail_parse_error(header: bytes, body: list[bytes]) -> None:
    _check(header + b"".join(body))
