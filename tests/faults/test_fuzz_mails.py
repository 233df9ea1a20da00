"""Case 6: hypothesis-generated mails (MIME structure, charsets incl. utf-7 / unknown / lying, HTML depth and
size) through Kafka and the real worker: every input is accounted for (an alert or a dead letter), and
the worker never dies.

The big fuzz of the normalize stage itself lives with that stage; this one goes through raw-mail, the
worker process and the dedup/rca/decide stages after it, with a modest number of examples
(``RCAFLOW_FAULTS_FUZZ``, default 60).

Guards: ``parse_mail`` raises only MailParseError whatever the bytes, and the worker's edge turns any
failure of one record into a dead letter instead of a crash (or a silent skip).
"""

from __future__ import annotations

import base64
import os
import quopri
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from schemas.codec import Codec
from streams.broker import EmbeddedBroker
from tests.faults import mails
from tests.faults.accounting import Ledger, Row, account_mails, mail_row, mails_done, short
from tests.faults.conftest import TENANT, Pipeline
from tests.faults.load import publish_raw, run_id

CHARSETS = ["utf-8", "gb2312", "gbk", "gb18030", "utf-7", "us-ascii", "iso-8859-1", "x-unknown-charset", ""]
ENCODINGS = ["8bit", "base64", "quoted-printable", "7bit", "x-bogus"]


def fuzz_count() -> int:
    return int(os.environ.get("RCAFLOW_FAULTS_FUZZ", "60"))


@st.composite
def html_bodies(draw: st.DrawFn, run: str, n: int) -> str:
    depth = draw(st.integers(0, 300))
    pad = draw(st.integers(0, 400_000))
    row_ok = draw(st.booleans())
    text = draw(st.text(max_size=200))
    core = mails.alert_html(run, n, description=text) if row_ok else f"<p>{text}</p>"
    return "<div>" * depth + core + ("<!--" + "x" * pad + "-->" if pad else "") + "</div>" * draw(
        st.integers(0, depth))


def encode(text: str, actual: str) -> bytes:
    try:
        return text.encode(actual or "utf-8", errors="replace")
    except LookupError:
        return text.encode("utf-8")


@st.composite
def parts(draw: st.DrawFn, run: str, n: int, depth: int) -> bytes:
    if depth > 0 and draw(st.booleans()):
        boundary = f"b{depth}-{draw(st.integers(0, 10**6))}"
        subtype = draw(st.sampled_from(["alternative", "mixed", "related"]))
        children = draw(st.lists(parts(run, n, depth - 1), min_size=0, max_size=3))
        close = draw(st.booleans())
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + c + b"\r\n" for c in children)
        body += (b"--" + boundary.encode() + b"--\r\n") if close else b""
        return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode() + body
    declared = draw(st.sampled_from(CHARSETS))
    actual = draw(st.sampled_from([declared or "utf-8", "utf-8", "gb18030"]))  # sometimes a lie
    kind = draw(st.sampled_from(["html", "plain"]))
    text = draw(html_bodies(run, n)) if kind == "html" else draw(st.text(max_size=2000))
    raw = encode(text, actual)
    cte = draw(st.sampled_from(ENCODINGS))
    if cte == "base64":
        raw = base64.encodebytes(raw)
    elif cte == "quoted-printable":
        raw = quopri.encodestring(raw)
    charset = f'; charset="{declared}"' if declared else ""
    return (f"Content-Type: text/{kind}{charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").encode() + raw


@st.composite
def fuzz_mails(draw: st.DrawFn, run: str, n: int) -> bytes:
    body = draw(parts(run, n, depth=draw(st.integers(0, 3))))
    head, _, rest = body.partition(b"\r\n\r\n")
    message_id = f"<fuzz-{n}-{uuid.uuid4().hex}@faults>"
    subject = draw(st.sampled_from(["Control Cluster Details", "=?utf-7?Q?+ZeVn,A-?=", "", "=?x-bad?B?////?="]))
    headers = (f"MIME-Version: 1.0\r\nFrom: DCE5 Insight <insight-alert@dce5.example.test>\r\n"
               f"Subject: {subject}\r\nMessage-ID: {message_id}\r\n").encode()
    return headers + head + b"\r\n\r\n" + rest


def generated(run: str, count: int) -> list[bytes]:
    found: list[bytes] = []

    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        found.append(data.draw(fuzz_mails(run, len(found))))

    collect()
    return found


def test_generated_mails_through_the_worker(broker: EmbeddedBroker, codec: Codec, tmp_path: Path,
                                            record_row: list[Row]) -> None:
    run = run_id()
    raws = generated(run, fuzz_count())
    with Pipeline(broker.bootstrap, tmp_path, roles=("worker",), name="fuzz") as pipe, \
            Ledger(pipe.bootstrap, codec, pipe.prefix) as ledger:
        sent = publish_raw(pipe.bootstrap, codec, pipe.prefix, TENANT, raws)
        ledger.settle(mails_done(sent, require_actions=False), timeout=300, alive=pipe.stack.check)
        pipe.stack.check()  # the worker is still alive after all of it
        account = account_mails(ledger, sent, require_actions=False, alerts_per_mail=None)
        reasons = sum(1 for letter in ledger.letters() if letter.reason)
    row = mail_row(f"{len(raws)} hypothesis-generated mails through the worker", account,
                   notes=f"{account.normalized} parsed, {account.dead_lettered} dead-lettered "
                         f"({reasons} with a reason); worker alive")
    record_row.append(row)
    assert account.dead_lettered == reasons or reasons >= account.dead_lettered
    assert row.lost == 0, short(row.details)
    assert row.duplicates == 0, short(row.details)


pytestmark = pytest.mark.timeout(900)
