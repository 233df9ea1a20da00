"""Mails that are not alerts: bounces, auto-replies, invitations, newsletters, pasted documents.

The alert mailbox also receives mail that no monitoring system sent. Parsed
like an alert, an out-of-office reply quoting a ``[FIRING:1]`` mail fires the
alert again, and a README's ``Rule: ...`` line became a P3 alert through the
catch-all templates. Not-an-alert is therefore an outcome of its own, with a
bounded reason code (the metric label and the start of the dead-letter reason):

- ``delivery_report``: a DSN or read receipt (``multipart/report`` with
  ``report-type=delivery-status`` or ``disposition-notification``, RFC 3464 / 8098), or a
  mailer-daemon's bounce;
- ``auto_reply``: ``Auto-Submitted: auto-replied`` (RFC 3834), ``X-Autoreply``/``X-Autorespond``,
  ``Precedence: auto_reply``, or an "Automatic reply:" / "Out of Office:" / "自动回复:" subject;
- ``calendar_invite``: the mail carries a ``text/calendar`` or ``application/ics`` part;
- ``newsletter``: a mailing-list mail (``List-Unsubscribe``) that only the catch-all templates read;
- ``no_alert_evidence``: no template recognised the mail by its markers, and the catch-all
  templates found no alert name in it, or found one but the mail never speaks of alerts.

The first three are judged before any template: these mails quote the alert they answer, and
reading the quote would fire it again. ``Auto-Submitted: auto-generated`` (what alerting systems
themselves send) is not an auto-reply.
"""

from __future__ import annotations

import re

from producers.mail.errors import MailParseError
from producers.mail.mime import DecodedMail

#: The bounded set of reasons (the ``reason`` label of ``rcaflow_mail_not_alert_total``).
REASONS = ("delivery_report", "auto_reply", "calendar_invite", "newsletter", "no_alert_evidence")

_REPORT_TYPES = ("multipart/report;delivery-status", "multipart/report;disposition-notification")
_REPORT_PARTS = ("message/delivery-status", "message/disposition-notification")
_CALENDAR = ("text/calendar", "application/ics")
_DAEMON = re.compile(r"\b(mailer-daemon|mail-daemon)@|^\s*\"?mailer-daemon\b", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(undeliver(ed|able)\b|delivery status notification|delivery (failure|has failed|incomplete)|"
    r"returned mail\b|mail delivery (failed|failure|system)|failure notice|non[- ]?delivery|"
    r"退信|系统退信|邮件投递失败|投递失败|未能送达)",
    re.IGNORECASE,
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|out of (the )?office|"
    r"abwesenheitsnotiz|réponse automatique|自动回复|自動回覆|自动答复|休假|不在办公室)\s*[:：]",
    re.IGNORECASE,
)
_AUTO_HEADER_VALUE = re.compile(r"^\s*auto[-_]?repl", re.IGNORECASE)
#: Words an alert mail says somewhere; the catch-all templates accept nothing from a mail without one.
ALERT_WORDS = re.compile(
    r"\b(alerts?|alertname|alerting|alarms?|firing|resolved|incidents?|critical|warning|severity)\b"
    r"|告警|报警|警报|告警中|已恢复|故障|严重|紧急",
    re.IGNORECASE,
)


class NotAnAlertError(MailParseError):
    """The mail is not an alert (a bounce, an auto-reply, a newsletter ...): kept and counted, never triaged.

    A ``MailParseError`` so that every caller that refuses unreadable mail refuses this one too; the
    normalize stage tells them apart to count it under its own reason.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"not_an_alert: {reason}: {detail}")
        self.reason = reason
        self.detail = detail


def envelope_reason(mail: DecodedMail) -> tuple[str, str] | None:
    """(reason, detail) when the mail's headers or structure say it answers a mail rather than alerts."""
    types = mail.part_types
    top = types[0] if types else ""
    if top in _REPORT_TYPES or any(t.split(";")[0] in _REPORT_PARTS for t in types):
        return "delivery_report", f"a delivery report ({top or 'message/delivery-status'})"
    sender = mail.headers.get("from", "")
    if _DAEMON.search(sender) or (_BOUNCE_SUBJECT.search(mail.subject) and "postmaster" in sender.lower()):
        return "delivery_report", f"a bounce from {sender[:80]!r}"
    if _BOUNCE_SUBJECT.search(mail.subject):
        return "delivery_report", f"a bounce (subject {mail.subject[:80]!r})"
    submitted = mail.headers.get("auto-submitted", "")
    if _AUTO_HEADER_VALUE.search(submitted):
        return "auto_reply", f"Auto-Submitted: {submitted[:40]}"
    for name in ("x-autoreply", "x-autorespond", "x-auto-reply"):
        if name in mail.headers:
            return "auto_reply", f"{name} header"
    if _AUTO_HEADER_VALUE.search(mail.headers.get("precedence", "")):
        return "auto_reply", "Precedence: auto_reply"
    if _AUTO_SUBJECT.search(mail.subject):
        return "auto_reply", f"an automatic reply (subject {mail.subject[:80]!r})"
    if any(t.split(";")[0] in _CALENDAR for t in types):
        return "calendar_invite", "a calendar invitation (text/calendar part)"
    return None


def speaks_of_alerts(mail: DecodedMail, heads: list[str]) -> bool:
    """Whether the subject or the start of a body uses alert vocabulary at all."""
    return any(ALERT_WORDS.search(s) for s in mail.subjects) or any(ALERT_WORDS.search(h) for h in heads)


def is_list_mail(mail: DecodedMail) -> bool:
    return "list-unsubscribe" in mail.headers or mail.headers.get("precedence", "").strip().lower() in ("bulk", "list")
