"""Alert mails for the fault suite: normal ones (one alert each, a fingerprint of their own) and poison ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.utils import format_datetime

NAMESPACE = "amamba-system"
CLUSTER = "HK-DCE5-PLATFORM"

_ROW = "<tr><td>{alert}</td><td>警告</td><td>{cluster}</td><td>{namespace}</td><td>{workload}</td>" \
       "<td>2026-11-25 17:20:00</td><td>1</td><td>{description}</td></tr>"
_HTML = (
    "<!DOCTYPE html><html><head><meta charset=\"UTF-8\"><title>Control Cluster Details</title></head><body>"
    "<h2>DCE 5.0 可观测性 Insight 告警通知</h2><table><thead><tr><th>告警名称</th><th>级别</th><th>集群</th>"
    "<th>命名空间</th><th>对象</th><th>首次发生时间</th><th>次数</th><th>描述</th></tr></thead><tbody>"
    "{rows}</tbody></table></body></html>"
)


def workload_of(run: str, n: int) -> str:
    return f"jenkins-{run}-{n}"


def alert_html(run: str, n: int, *, description: str = "Jenkins 控制器重启") -> str:
    row = _ROW.format(alert="JenkinsRestarted", cluster=CLUSTER, namespace=NAMESPACE,
                      workload=workload_of(run, n), description=description)
    return _HTML.format(rows=row)


def headers(n: int, *, content_type: str, message_id: str | None = None, extra: str = "") -> str:
    mid = message_id or f"<fault-{n}-{uuid.uuid4().hex}@dce5.example.test>"
    return (
        "MIME-Version: 1.0\r\n"
        f"Content-Type: {content_type}\r\n"
        f"{extra}"
        "From: DCE5 Insight <insight-alert@dce5.example.test>\r\n"
        "To: sre-oncall@example.test\r\n"
        f"Subject: Control Cluster Details #{n}\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: {mid}\r\n"
        "\r\n"
    )


def normal_mail(run: str, n: int) -> bytes:
    """One JenkinsRestarted alert (auto-approved collect_diagnostics), workload unique to (run, n)."""
    body = alert_html(run, n).encode()
    head = headers(n, content_type='text/html; charset="utf-8"', extra="Content-Transfer-Encoding: 8bit\r\n")
    return head.encode() + body + b"\r\n"


def message_id_of(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
        if not line:
            break
    raise ValueError("no Message-ID")


# ----------------------------------------------------------------------------------------- poison mails
def utf7_mail(run: str, n: int) -> bytes:
    """Declares charset=utf-7 (a classic filter bypass): must not crash the parser."""
    body = "+ADw-script+AD4-alert(1)+ADw-/script+AD4- JenkinsRestarted " + workload_of(run, n)
    return headers(n, content_type='text/html; charset="utf-7"').encode() + body.encode() + b"\r\n"


def broken_mime_mail(run: str, n: int) -> bytes:
    """Multipart whose boundary never appears, a part with invalid base64 and no end."""
    head = headers(n, content_type='multipart/alternative; boundary="never-used"')
    body = ("--other-boundary\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            "!!!not base64@@@\r\n--other-boundary")
    return head.encode() + body.encode() + b"\r\n"


def lying_charset_mail(run: str, n: int) -> bytes:
    """Says us-ascii, carries GB18030 bytes of a Chinese alert table."""
    body = alert_html(run, n, description="日志泛滥 容器重启").encode("gb18030")
    head = headers(n, content_type='text/html; charset="us-ascii"', extra="Content-Transfer-Encoding: 8bit\r\n")
    return head.encode() + body + b"\r\n"


def unknown_charset_mail(run: str, n: int) -> bytes:
    body = alert_html(run, n).encode()
    head = headers(n, content_type='text/html; charset="x-no-such-charset"',
                   extra="Content-Transfer-Encoding: 8bit\r\n")
    return head.encode() + body + b"\r\n"


def oversize_mail(run: str, n: int, size: int = 10 * 1024 * 1024 + 64 * 1024) -> bytes:
    """Over the 10 MiB per-mail limit: base64 lines of an attachment."""
    head = headers(n, content_type='multipart/mixed; boundary="b1"')
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3"  # 76 chars
    count = size // (len(line) + 2) + 1
    parts = [
        b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n", alert_html(run, n).encode(), b"\r\n",
        b"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        b"\r\n".join([line] * count), b"\r\n--b1--\r\n",
    ]
    return head.encode() + b"".join(parts)
