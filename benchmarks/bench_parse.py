"""Mail parser throughput and hostile-input cost; prints one JSON object.

Run: ``.venv/bin/python benchmarks/bench_parse.py [--seconds 3]``. Numbers are
per core (single process). The target from MEASURED.md: >= 500 typical 20 KB
mails per second per core.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import logging
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.mime.text import MIMEText
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from producers.mail import MailParseError, parse_mail  # noqa: E402
from schemas.records import EventSource  # noqa: E402

NOW = datetime(2026, 11, 25, tzinfo=UTC)
SOURCE = EventSource()
HEADER = ["告警名称", "级别", "集群", "命名空间", "对象", "首次发生时间", "次数", "描述"]
CELL = '<td style="border:1px solid #d9d9d9;padding:6px 10px;">{}</td>'


def table_mail(rows: int, charset: str = "utf-8", pad: int = 0) -> bytes:
    """A DCE 5 digest like the customer's: styled cells, QP/base64 body, Chinese text."""
    head = "".join(f'<th style="border:1px solid #d9d9d9;padding:6px 10px;">{h}</th>' for h in HEADER)
    body = "".join(
        "<tr>"
        + "".join(
            CELL.format(v)
            for v in (
                "PrometheusRemoteWriteBehind", "严重", "HK-DCE5-PLATFORM", "insight-system",
                f"prometheus-insight-agent-kube-prometh-prometheus-{i}", "2026-11-25 08:00:00", str(i + 1),
                "Prometheus 远程写入落后 182.5 秒，请检查 vminsert 写入延迟与网络。",
            )
        )
        + "</tr>"
        for i in range(rows)
    )  # fmt: skip
    html = (
        "<html><head><style>td{color:#262626}</style></head><body><h2>DCE 5.0 Insight 告警通知</h2>"
        f"<h3>告警中</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        + "<p>填充</p>" * pad
        + "</body></html>"
    )
    msg = MIMEText(html, "html", charset)
    msg["Subject"] = "Control Cluster Details"
    msg["Message-ID"] = "<bench@example.test>"
    return msg.as_bytes()


def rate(fn: Callable[[], object], seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def parse(raw: bytes) -> Callable[[], object]:
    return lambda: parse_mail(raw, tenant="t", received_at=NOW, source=SOURCE)


def hostile(raw: bytes) -> dict[str, object]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        outcome = f"{len(parse_mail(raw, tenant='t', received_at=NOW, source=SOURCE).events)} events"
    except MailParseError as exc:
        outcome = "MailParseError: " + exc.message[:80]
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "bytes": len(raw),
        "seconds": round(seconds, 3),
        "peak_rss_growth_mib": round((after - before) / 1024, 1),
        "outcome": outcome,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=None, help="also record the numbers in this results file")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the 10,000-row case logs its truncation; not news here
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Hostile first: ru_maxrss only grows, so a later, larger peak would hide an earlier one.
    rows_10k = table_mail(10_000)
    # "<p>填充</p>" is 13 UTF-8 bytes, ~17.3 after base64: aim at 9.5 MiB and 10.5 MiB mails.
    just_under = table_mail(5, pad=int(9.5 * 1024 * 1024 / 17.4))
    over = table_mail(5, pad=int(10.5 * 1024 * 1024 / 17.3))
    results: dict[str, object] = {
        "python": sys.version.split()[0],
        "baseline_rss_mib": round(baseline_rss / 1024, 1),
        "hostile": {
            "html_just_under_10mb": hostile(just_under),
            "html_over_10mb_refused": hostile(over),
            "table_10000_rows": hostile(rows_10k),
        },
    }
    typical = table_mail(20)
    real = (ROOT / "tests/fixtures/mail/alertmanager_default/real-default-firing.eml").read_bytes()
    text = (ROOT / "tests/fixtures/mail/dce5_insight_text/multi-sections-gb18030.eml").read_bytes()
    gb = table_mail(20, charset="gb18030")
    results["mails_per_second"] = {
        f"dce5_table_utf8_{len(typical) // 1024}kb_20_rows": round(rate(parse(typical), args.seconds)),
        f"dce5_table_gb18030_base64_{len(gb) // 1024}kb_20_rows": round(rate(parse(gb), args.seconds)),
        f"alertmanager_default_{len(real) // 1024}kb": round(rate(parse(real), args.seconds)),
        f"dce5_insight_text_{len(text) // 1024}kb": round(rate(parse(text), args.seconds)),
    }
    results["mime_only_per_second"] = {
        "compat32": round(rate(lambda: email.message_from_bytes(typical), args.seconds / 2)),
        "policy.default": round(
            rate(lambda: email.message_from_bytes(typical, policy=email.policy.default), args.seconds / 2)
        ),
    }
    print(json.dumps(results, ensure_ascii=False, indent=2))
    if args.out is not None:
        from benchmarks.results import write_results

        write_results("parse", results, args.out)


if __name__ == "__main__":
    main()
