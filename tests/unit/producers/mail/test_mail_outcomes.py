"""Three outcomes of a mail: alerts (bad rows reported beside them), a parse error, or not an alert."""

from __future__ import annotations

from datetime import UTC, datetime
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from producers.mail import MailParseError, NotAnAlertError, ParsedMail, parse_mail
from producers.mail.not_alert import REASONS
from schemas.records import EventSource, SourceKind

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "mail"
ROOT = Path(__file__).resolve().parents[4]
SHARED_SAMPLES = ROOT.parent / "shared" / "samples"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SOURCE = EventSource(kind=SourceKind.IMAP, mailbox="alerts@example.test")
HEADER = ["告警名称", "级别", "集群", "命名空间", "对象", "首次发生时间", "次数", "描述"]


def _parse(raw: bytes) -> ParsedMail:
    return parse_mail(raw, tenant="acme", received_at=NOW, source=SOURCE)


def _mail(html: str, subject: str = "Control Cluster Details", **headers: str) -> bytes:
    msg = MIMEText(html, "html", "utf-8")
    msg["Subject"] = subject
    msg["Message-ID"] = "<outcome@example.test>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    return msg.as_bytes()


def _table(rows: list[list[str]], header: list[str] = HEADER) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<html><body><h3>告警中</h3><table><tr>{head}</tr>{body}</table></body></html>"


GOOD = ["JenkinsRestarted", "警告", "HK", "amamba-system", "amamba-jenkins-0", "2026-11-25 08:00:00", "3", "x"]


@pytest.mark.parametrize("path", sorted((FIXTURES / "not_alert").glob("*.eml")), ids=lambda p: p.stem)
def test_mails_that_are_not_alerts_say_so_with_a_bounded_reason(path: Path) -> None:
    with pytest.raises(NotAnAlertError) as info:
        _parse(path.read_bytes())
    assert info.value.reason in REASONS
    assert info.value.message.startswith(f"not_an_alert: {info.value.reason}: ")


def test_every_real_sample_and_alert_fixture_is_still_an_alert() -> None:
    alert_mails = [
        *SHARED_SAMPLES.glob("*.eml"),
        *(ROOT / "samples").glob("*.eml"),
        *(p for p in FIXTURES.glob("*/*.eml") if p.parent.name not in ("errors", "not_alert")),
    ]
    assert len(alert_mails) >= 70
    for path in alert_mails:
        parsed = _parse(path.read_bytes())
        assert parsed.events, path
        assert not parsed.rejected or path.stem == "bad-row-among-good", (path, parsed.rejected)


def test_a_bad_row_is_reported_and_the_good_rows_of_the_mail_still_come_through() -> None:
    parsed = _parse((FIXTURES / "dce5_control_cluster_details" / "bad-row-among-good.eml").read_bytes())
    assert [e.alert for e in parsed.events] == ["RecordingRulesError", "JenkinsRestarted"]
    assert [(r.where, r.reason) for r in parsed.rejected] == [("table 1 row 3", "alert_name_workload")]
    assert "vmalert-insight-victoria-metrics-k8s-stack-7b5c9d8f6-hk2lq" in parsed.rejected[0].detail


def test_a_row_whose_severity_cell_holds_no_severity_is_rejected() -> None:
    shifted = ["NodeNotReady", "2026-11-25 08:00:00", "HK", "kube-system", "node-1", "", "1", "x"]
    empty = ["DiskPressure", "", "HK", "kube-system", "node-2", "2026-11-25 08:00:00", "1", "x"]
    parsed = _parse(_mail(_table([GOOD, shifted, empty])))
    assert [e.alert for e in parsed.events] == ["JenkinsRestarted"]
    assert [r.reason for r in parsed.rejected] == ["severity_invalid", "severity_missing"]


def test_an_alert_mail_whose_rows_are_all_bad_is_a_parse_error_naming_each_row() -> None:
    bad = [["amamba-jenkins-0", "警告", "HK", "ns", "w", "", "1", "x"],
           ["10.0.0.1:9100", "警告", "HK", "ns", "w", "", "1", "x"]]
    with pytest.raises(MailParseError) as info:
        _parse(_mail(_table(bad)))
    assert not isinstance(info.value, NotAnAlertError)  # its markers say it is an alert mail: a failure to read it
    assert "2 row(s) are not alerts" in info.value.message
    assert "alert_name_workload" in info.value.message and "alert_name_address" in info.value.message


def test_a_rowspan_digest_gives_one_alert_per_row_with_its_merged_cluster() -> None:
    parsed = _parse((FIXTURES / "dce5_control_cluster_details" / "rowspan-cluster-digest.eml").read_bytes())
    assert len(parsed.events) == 6 and not parsed.rejected
    assert [e.labels["cluster"] for e in parsed.events] == ["HK-DCE5-PLATFORM"] * 3 + ["HK-DCE5-WORKLOAD-01"] * 2 + [
        "HK-DCE5-PLATFORM"]
    assert [e.labels["namespace"] for e in parsed.events[:3]] == ["insight-system"] * 3
    assert [e.status.value for e in parsed.events] == ["firing"] * 5 + ["resolved"]


def test_the_catch_all_templates_need_a_mail_that_speaks_of_alerts() -> None:
    header = ["Rule", "Level", "Summary"]
    rows = [["VictoriaMetrics", "info", "released"], ["Alertmanager", "info", "released"]]
    html = f"<html><body>{_table(rows, header).split('<body>')[1]}"
    with pytest.raises(NotAnAlertError) as info:
        _parse(_mail(html.replace("<h3>告警中</h3>", ""), subject="Release notes"))
    assert info.value.reason == "no_alert_evidence"
    parsed = _parse(_mail(html.replace("<h3>告警中</h3>", ""), subject="Disk alerts on db-1"))
    assert parsed.template == "generic_html_table@1"
    assert [e.alert for e in parsed.events] == ["VictoriaMetrics", "Alertmanager"]


def test_what_alerting_systems_send_themselves_is_not_an_auto_reply() -> None:
    raw = (FIXTURES / "alertmanager_default" / "real-default-firing.eml").read_bytes()
    generated = raw.replace(b"Subject:", b"Auto-Submitted: auto-generated\r\nPrecedence: bulk\r\nSubject:", 1)
    assert _parse(generated).events
    replied = raw.replace(b"Subject:", b"Auto-Submitted: auto-replied\r\nSubject:", 1)
    with pytest.raises(NotAnAlertError, match="auto_reply"):
        _parse(replied)


def test_a_forwarded_bounce_or_invite_inside_an_alert_does_not_silence_it() -> None:
    """Only the mail's own structure counts: a forwarded alert with a calendar file inside is still an alert."""
    raw = (FIXTURES / "dce5_control_cluster_details" / "forwarded-as-attachment.eml").read_bytes()
    assert _parse(raw).events
