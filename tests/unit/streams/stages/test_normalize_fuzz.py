"""Whatever mail arrives, the normalize stage yields events the worker can send, or a dead letter it can send.

The property is the worker's: nothing escapes the stage, and every output, a dead
letter included, encodes as the Avro record that goes to Kafka. Encoding is part of
it because the lost utf-7 mail of issue 12 parsed fine and then could not be sent
(its text held lone surrogates).
"""

from __future__ import annotations

import base64
import json
import quopri
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import AvroSingleObjectCodec
from schemas.records import AlertEvent, DeadLetter, RawMail, SourceKind
from streams.settings import Settings
from streams.stages.core import Position, StageContext, outputs
from streams.wiring.runtime import build_stages

CODEC = AvroSingleObjectCodec()
STAGE = build_stages(Settings()).normalize
WHERE = Position("raw-mail", 0, 42, b"acme:<m@x>")
NOW = datetime(2026, 11, 25, tzinfo=UTC)

#: (declared charset, charset the bytes are really in): honest, unknown, lying and hostile declarations.
CHARSETS = [
    ("utf-8", "utf-8"), ("gb2312", "gb18030"), ("gbk", "gbk"), ("utf-7", "utf-7"), ("utf-7", "utf-8"),
    ("utf-8", "gb18030"), ("gb2312", "utf-8"), ("iso-8859-1", "utf-8"), ("x-unknown-42", "utf-8"),
    ("utf-16", "utf-8"), ("utf-16", "utf-16"), ("idna", "utf-8"), ("rot13", "utf-8"), ("", "utf-8"),
    ("big5", "utf-8"), ("us-ascii", "gb18030"),
]  # fmt: skip
#: Column names in Chinese, and in English (all ASCII: a utf-7 declaration then decodes the whole body).
HEADER_SETS = [
    ["告警名称", "级别", "集群", "命名空间", "对象", "首次发生时间", "次数", "描述"],
    ["alertname", "severity", "cluster", "namespace", "workload", "first_occur", "times", "description"],
]
HEADERS = HEADER_SETS[0]
#: Cell texts: ordinary values, and ones whose utf-7 form carries lone surrogates or hostile markup.
CELLS = st.one_of(
    st.sampled_from(["etcdHighFsyncDurations", "P2", "严重", "HK-DCE5-PLATFORM", "kube-system", "etcd-0",
                     "2026-11-25 10:00:00", "3", "+2D0-", "+2D3cAA-", "&#xD800;", "&#0;", "<script>x</script>",
                     "=?utf-7?Q?+2D0-?=", "\x00", "\u202e", "𝔘𝔫𝔦"]),
    st.text(max_size=40),
)  # fmt: skip


def _encode(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset)
    except (UnicodeError, LookupError):
        return text.encode("utf-8", "surrogatepass")


def _html(rows: list[list[str]], depth: int, headers: list[str] = HEADERS) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    table = f"<h3>Firing</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return "<div>" * depth + table + "</div>" * depth


def _part(text: str, declared: str, real: str, transfer: str, subtype: str) -> bytes:
    data = _encode(text, real)
    charset = f'; charset="{declared}"' if declared else ""
    if transfer == "base64":
        payload = base64.encodebytes(data)
    elif transfer == "quoted-printable":
        payload = quopri.encodestring(data)
    else:
        payload = data
    return (f"Content-Type: text/{subtype}{charset}\r\nContent-Transfer-Encoding: {transfer}\r\n\r\n").encode() + \
        payload


@st.composite
def mails(draw: st.DrawFn) -> bytes:
    declared, real = draw(st.sampled_from(CHARSETS))
    rows = draw(st.lists(st.lists(CELLS, min_size=len(HEADERS), max_size=len(HEADERS)), min_size=0, max_size=4))
    depth = draw(st.sampled_from([0, 1, 5, 40, 400]))
    subject = draw(st.sampled_from(["Control Cluster Details", "=?utf-7?B?KzJEMC0=?=", "=?x-nope?Q?abc?=",
                                    "[FIRING:1] etcdHighFsyncDurations", "=?gb2312?B?uOa+rw==?="]))
    transfer = draw(st.sampled_from(["8bit", "base64", "quoted-printable", "7bit"]))
    shape = draw(st.sampled_from(["html", "plain-json", "alternative", "forwarded", "nested-multipart"]))
    html = _html(rows, depth, draw(st.sampled_from(HEADER_SETS)))
    if shape == "plain-json":
        blob = draw(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                             inner, max_size=4),
                                 max_leaves=30))
        body = _part(json.dumps(blob, ensure_ascii=False), declared, real, transfer, "plain")
    else:
        body = _part(html, declared, real, transfer, "html")
    if shape == "alternative":
        body = (b"Content-Type: multipart/alternative; boundary=alt\r\n\r\n--alt\r\n" +
                _part("plain " + " ".join(HEADERS), declared, real, transfer, "plain") + b"\r\n--alt\r\n" + body +
                b"\r\n--alt--\r\n")
    elif shape == "forwarded":
        body = b"Content-Type: message/rfc822\r\n\r\nSubject: " + subject.encode() + b"\r\n" + body
    elif shape == "nested-multipart":
        for level in range(draw(st.integers(1, 9))):
            body = (f"Content-Type: multipart/mixed; boundary=b{level}\r\n\r\n--b{level}\r\n").encode() + body + \
                f"\r\n--b{level}--\r\n".encode()
    padding = b"\r\n" + b"x" * draw(st.sampled_from([0, 10, 200_000]))
    head = f"From: alerts@example.test\r\nSubject: {subject}\r\nMessage-ID: <fuzz@x>\r\nMIME-Version: 1.0\r\n"
    return head.encode() + body + padding


def _check(raw: bytes) -> list[AlertEvent]:
    mail = RawMail(tenant="acme", message_id="<fuzz@x>", mailbox="t", source=SourceKind.FILE, received_at=NOW,
                   raw=raw)
    result = STAGE(mail, WHERE)  # nothing may escape the stage
    sent = outputs("normalize", result, CODEC.encode(mail, topic="raw-mail"), WHERE, StageContext())
    assert sent, "an input yielded neither events nor a dead letter"
    for out in sent:
        assert isinstance(out.record, AlertEvent | DeadLetter)
        data = CODEC.encode(out.record, topic=out.spec.name)  # what the worker sends must encode
        assert CODEC.decode(data, type(out.record), topic=out.spec.name) == out.record
    letters = [o.record for o in sent if isinstance(o.record, DeadLetter)]
    assert len(letters) == (0 if result.refused is None else 1)
    assert all(letter.reason and letter.offset == 42 for letter in letters)
    return [o.record for o in sent if isinstance(o.record, AlertEvent)]


@settings(max_examples=150, deadline=timedelta(seconds=10), database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mails())
def test_every_mail_yields_sendable_events_or_a_sendable_dead_letter(raw: bytes) -> None:
    _check(raw)


def test_a_utf7_mail_with_lone_surrogates_yields_events_that_encode() -> None:
    """The mail of issue 12: its utf-7 text decodes to lone surrogates, which no record can hold."""
    row = ["etcdHighFsyncDurations+2D0-", "P2", "HK-DCE5-PLATFORM", "kube-system", "etcd-0", "2026-11-25 10:00:00",
           "3", "fsync slow"]
    html = _html([row], 1, HEADER_SETS[1])
    raw = (b"From: alerts@example.test\r\nSubject: Control Cluster Details\r\nMessage-ID: <u7@x>\r\n" +
           _part(html, "utf-7", "utf-8", "8bit", "html"))
    events = _check(raw)
    assert events and events[0].alert == "etcdHighFsyncDurations+2D0-", "the utf-7 mail was not read"
