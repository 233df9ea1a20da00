"""`rcaflow stats` counts what normalize kept out of triage from the dead letters' error types and reason codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.records import DeadLetter
from streams.ops.mail_outcomes import mail_outcomes, render_mail_outcomes

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def _letter(error_type: str, reason: str, *, tenant: str = "acme", stage: str = "normalize",
            at: datetime = NOW) -> DeadLetter:
    return DeadLetter(tenant=tenant, stage=stage, source_topic="raw-mail", payload=b"m", reason=reason,
                      error_type=error_type, at=at)


def test_mail_outcomes_by_kind_and_reason_within_the_window_and_tenant() -> None:
    letters = [
        _letter("NotAnAlertError", "not_an_alert: delivery_report: a bounce"),
        _letter("NotAnAlertError", "not_an_alert: auto_reply: Auto-Submitted: auto-replied"),
        _letter("NotAnAlertError", "not_an_alert: auto_reply: an automatic reply"),
        _letter("RejectedRowsError", "rejected_rows: 3 row(s) are not alerts, 2 alert(s) kept: ..."),
        _letter("MailParseError", "no alert found in mail"),
        _letter("NotAnAlertError", "not_an_alert: newsletter: x", tenant="other"),
        _letter("NotAnAlertError", "not_an_alert: newsletter: x", at=NOW - timedelta(days=2)),
        _letter("CodecError", "bad bytes", stage="dedup"),
    ]
    outcomes = mail_outcomes(letters, since=NOW - timedelta(days=1), tenant="acme")
    assert outcomes.as_dict() == {"not_an_alert": {"auto_reply": 2, "delivery_report": 1},
                                  "mails_with_rejected_rows": 1, "rejected_rows": 3, "unreadable_alert_mails": 1}
    lines = render_mail_outcomes(outcomes)
    assert lines[0] == "mails not alerts (not triaged): 3 (auto_reply 2, delivery_report 1)"
    assert "1 (3 rows)" in lines[1] and lines[1].endswith("could not be read: 1")
