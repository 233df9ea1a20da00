"""parse_mail behaviour a user notices: identity, configuration, limits, template registry."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from producers.mail import MailParseError, ParseLimits, TemplateConfigError, load_templates, parse_mail
from producers.mail.engines import EngineLimits
from producers.mail.mime import MimeLimits
from schemas.records import AlertStatus, EventSource, SourceKind

CORPUS = Path(__file__).resolve().parents[3] / "fixtures" / "mail"
REAL_TABLE = CORPUS / "dce5_control_cluster_details" / "real-control-cluster-details.eml"
REAL_AM = CORPUS / "alertmanager_default" / "real-default-firing.eml"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SOURCE = EventSource(kind=SourceKind.IMAP, mailbox="alerts@example.test", topic="raw-mail", partition=0, offset=7)
UUID = "35b54a48-b66c-467b-a8dc-503c40826330"


def _mail(html: str, subject: str = "Control Cluster Details", msg_id: str = "t1@example.test") -> bytes:
    msg = MIMEText(html, "html", "utf-8")
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{msg_id}>"
    return msg.as_bytes()


def _table(rows: list[list[str]], header: list[str] | None = None) -> str:
    header = header or ["告警名称", "级别", "集群", "命名空间", "对象", "首次发生时间", "次数", "描述"]
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<html><body><h3>告警中</h3><table><tr>{head}</tr>{body}</table></body></html>"


ROW = ["JenkinsRestarted", "警告", UUID, "amamba-system", "amamba-jenkins-0", "2026-11-25 08:00:00", "3", "x"]


def test_reparsing_the_same_mail_gives_the_same_event_ids() -> None:
    first = parse_mail(REAL_TABLE.read_bytes(), tenant="acme", received_at=NOW, source=SOURCE)
    again = parse_mail(REAL_TABLE.read_bytes(), tenant="acme", received_at=NOW, source=SOURCE)
    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]
    assert len({e.event_id for e in first.events}) == len(first.events) == 2
    other_tenant = parse_mail(REAL_TABLE.read_bytes(), tenant="other", received_at=NOW, source=SOURCE)
    assert {e.event_id for e in other_tenant.events}.isdisjoint(e.event_id for e in first.events)


def test_table_digest_and_alertmanager_mail_about_one_alert_share_a_fingerprint() -> None:
    table = parse_mail(REAL_TABLE.read_bytes(), tenant="acme", received_at=NOW, source=SOURCE)
    am = parse_mail(REAL_AM.read_bytes(), tenant="acme", received_at=NOW, source=SOURCE)
    assert table.events[0].alert == am.events[0].alert == "JenkinsRestarted"
    assert table.events[0].fingerprint == am.events[0].fingerprint
    assert am.template == "alertmanager_default@1"
    assert am.message_id == "1795600793714518418.8407984911379350476@vm"


def test_cluster_uuid_becomes_the_readable_name_and_keeps_the_id() -> None:
    parsed = parse_mail(
        _mail(_table([ROW])), tenant="acme", received_at=NOW, source=SOURCE, cluster_names={UUID: "HK-DCE5-PLATFORM"}
    )
    labels = parsed.events[0].labels
    assert labels["cluster"] == "HK-DCE5-PLATFORM"
    assert labels["cluster_id"] == UUID


def test_severity_map_overrides_the_template_words() -> None:
    default = parse_mail(_mail(_table([ROW])), tenant="acme", received_at=NOW, source=SOURCE)
    custom = parse_mail(
        _mail(_table([ROW])), tenant="acme", received_at=NOW, source=SOURCE, severity_map={"警告": "P2"}
    )
    assert (default.events[0].severity, custom.events[0].severity) == ("P3", "P2")


def test_zone_less_times_are_china_time_and_times_count_is_read() -> None:
    event = parse_mail(_mail(_table([ROW])), tenant="acme", received_at=NOW, source=SOURCE).events[0]
    assert event.metrics.first_occur == datetime(2025 + 1, 11, 25, 0, 0, tzinfo=UTC)
    assert event.metrics.times == 3
    assert event.status is AlertStatus.FIRING
    assert event.source == SOURCE


def test_error_reason_names_every_template_tried() -> None:
    with pytest.raises(MailParseError) as info:
        parse_mail(_mail("<p>hello</p>", subject="hi"), tenant="acme", received_at=NOW, source=SOURCE)
    reason = info.value.message
    assert info.value.retriable is False
    for template in load_templates():
        assert template.parser_id in reason


def test_a_mail_over_the_size_cap_is_refused_without_parsing() -> None:
    limits = ParseLimits(mime=MimeLimits(max_bytes=1000))
    with pytest.raises(MailParseError, match="over the 1000-byte limit"):
        parse_mail(_mail(_table([ROW] * 20)), tenant="acme", received_at=NOW, source=SOURCE, limits=limits)


def test_ten_thousand_rows_are_cut_at_the_alert_cap_with_a_warning() -> None:
    rows = [[f"Alert{i}", "警告", "c", "ns", f"pod-{i}", "", "1", ""] for i in range(10_000)]
    parsed = parse_mail(_mail(_table(rows)), tenant="acme", received_at=NOW, source=SOURCE)
    assert len(parsed.events) == EngineLimits().max_alerts
    assert parsed.warnings and "stopped at" in parsed.warnings[0]


def test_ten_megabytes_of_html_is_refused_and_just_under_is_parsed_bounded() -> None:
    junk = "<div>" + "<p>告警 noise</p>" * 700_000 + "</div>"
    big = _mail(junk)
    assert len(big) > 10 * 1024 * 1024
    with pytest.raises(MailParseError, match="limit"):
        parse_mail(big, tenant="acme", received_at=NOW, source=SOURCE)
    under = _mail("<div>" + "<p>noise</p>" * 500_000 + "</div>" + _table([ROW]))
    parsed = parse_mail(under, tenant="acme", received_at=NOW, source=SOURCE)
    assert [e.alert for e in parsed.events] == ["JenkinsRestarted"]


def test_a_new_layout_is_a_yaml_file_not_code(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(
        textwrap.dedent(
            """
            templates:
              - id: acme_ops_digest
                version: 3
                engine: html_table
                priority: 1
                timezone: UTC
                detect:
                  subject: ['^ACME ops']
                fields:
                  alert: [Problem]
                  workload: [Host thing]
            """
        ),
        encoding="utf-8",
    )
    registry = load_templates([tmp_path])
    html = _table([["DiskFull", "high", "c1", "ns", "db-0", "2026-11-25 08:00:00"]],
                  header=["Problem", "level", "cluster", "namespace", "Host thing", "time"])  # fmt: skip
    parsed = parse_mail(_mail(html, subject="ACME ops: 1 problem"), tenant="acme", received_at=NOW,
                        source=SOURCE, registry=registry)  # fmt: skip
    event = parsed.events[0]
    assert (event.parser, event.alert, event.severity) == ("acme_ops_digest@3", "DiskFull", "P2")
    assert event.labels["workload"] == "db-0"
    assert event.metrics.first_occur == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_a_bad_template_file_fails_at_load_time(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "templates:\n  - id: bad\n    engine: html_table\n    detect: {subject: ['([']}\n", encoding="utf-8"
    )
    with pytest.raises(TemplateConfigError, match="bad regex"):
        load_templates([tmp_path])
    (tmp_path / "bad.yaml").write_text("templates:\n  - id: bad\n    engine: nope\n", encoding="utf-8")
    with pytest.raises(TemplateConfigError):
        load_templates([tmp_path])


def test_untrusted_text_is_kept_as_inert_strings() -> None:
    row = ['Foo\u202e\u200b"})', "警告", "c", "ns", "a" * 5000, "", "99999999999999", "<b>x</b>"]
    event = parse_mail(_mail(_table([row])), tenant="acme", received_at=NOW, source=SOURCE).events[0]
    assert event.alert == 'Foo"})'
    assert len(event.labels["workload"]) == 512
    assert event.metrics.times == 1


def test_alertmanager_mail_and_its_webhook_dedup_against_each_other() -> None:
    """The same alert captured as mail and as webhook (real Alertmanager 0.25 output) gets one fingerprint."""
    import json

    from producers.alertmanager import WebhookBody, webhook_to_events

    body = WebhookBody.model_validate(json.loads(REAL_AM.with_suffix(".webhook.json").read_text(encoding="utf-8")))
    hooked = webhook_to_events(body, tenant="acme", received_at=NOW)
    mailed = parse_mail(REAL_AM.read_bytes(), tenant="acme", received_at=NOW, source=SOURCE).events
    assert [(e.alert, e.fingerprint, e.labels["workload"]) for e in mailed] == [
        (e.alert, e.fingerprint, e.labels["workload"]) for e in hooked
    ]


def test_raw_eight_bit_and_gb18030_encoded_subjects_are_read() -> None:
    html = _table([ROW]).encode("utf-8")
    raw = b"Subject: \xe5\x91\x8a\xe8\xad\xa6 Control Cluster Details\r\nMessage-ID: <8bit@x>\r\n"
    raw += b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html
    assert parse_mail(raw, tenant="acme", received_at=NOW, source=SOURCE).subject == "告警 Control Cluster Details"
    encoded = b"Subject: =?gb2312?B?uOa+rw==?= Control Cluster\r\n Details\r\nMessage-ID: <gb@x>\r\n"
    encoded += b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html
    assert parse_mail(encoded, tenant="acme", received_at=NOW, source=SOURCE).subject == "告警 Control Cluster Details"


def test_text_bodies_are_capped_too() -> None:
    blocks = "".join(f"规则名称：Alert{i}\n集群：c\n资源名称：pod-{i}\n\n" for i in range(600))
    msg = MIMEText(blocks, "plain", "utf-8")
    msg["Subject"] = "[Insight] 告警通知"
    parsed = parse_mail(msg.as_bytes(), tenant="acme", received_at=NOW, source=SOURCE)
    assert len(parsed.events) == 500
    assert parsed.template == "dce5_insight_text@1"
    assert "100 dropped" in parsed.warnings[0]
