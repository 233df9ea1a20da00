"""What the normalize stage kept out of triage, read back from the dead-letter topic, for ``rcaflow stats``.

Three kinds of mail never become incidents: mails that are not alerts (a bounce, an
auto-reply, a newsletter; counted by reason), alert mails with some rows that are not
alerts (their good rows went on), and alert mails that could not be read at all. The
dead letters carry everything needed: the stage, the error type and a reason that starts
with its code (docs/mail-templates.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from schemas.records import DeadLetter

_ROWS = re.compile(r"^rejected_rows: (\d+) row")


@dataclass
class MailOutcomes:
    #: reason -> mails that are not alerts
    not_alert: Counter[str] = field(default_factory=Counter)
    #: alert mails kept for rows that are not alerts, and how many such rows they had
    partial_mails: int = 0
    rejected_rows: int = 0
    #: alert mails that could not be read (MailParseError)
    unreadable: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"not_an_alert": dict(sorted(self.not_alert.items())), "mails_with_rejected_rows": self.partial_mails,
                "rejected_rows": self.rejected_rows, "unreadable_alert_mails": self.unreadable}


def mail_outcomes(letters: Iterable[DeadLetter], *, since: datetime, tenant: str | None = None) -> MailOutcomes:
    """The normalize stage's dead letters written at or after ``since`` (of ``tenant``), by kind."""
    out = MailOutcomes()
    for letter in letters:
        if letter.stage != "normalize" or letter.at < since or (tenant and letter.tenant != tenant):
            continue
        if letter.error_type == "NotAnAlertError":
            parts = letter.reason.split(": ", 2)
            out.not_alert[parts[1] if len(parts) > 1 else "unknown"] += 1
        elif letter.error_type == "RejectedRowsError":
            out.partial_mails += 1
            found = _ROWS.match(letter.reason)
            out.rejected_rows += int(found.group(1)) if found else 1
        elif letter.error_type == "MailParseError":
            out.unreadable += 1
    return out


def render_mail_outcomes(outcomes: MailOutcomes) -> list[str]:
    """Two lines for a terminal: what was not an alert, and what could not be read."""
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.not_alert.items())) or "none"
    return [
        f"mails not alerts (not triaged): {sum(outcomes.not_alert.values())} ({reasons})",
        f"alert mails with rows that are not alerts: {outcomes.partial_mails} ({outcomes.rejected_rows} rows); "
        f"alert mails that could not be read: {outcomes.unreadable}",
    ]
