"""Is this row an alert? The alert-name and severity cells must hold what their columns promise.

A row read from the wrong column (a merged cell the parser missed, a note row,
a README's ``Rule: ...`` line) must never become an alert named after a pod, an
IP or a sentence: such a row is rejected with a reason code, and the mail's
other rows still count. The rules (docs/mail-templates.md, "Row validation"):

An alert name is what alerting rules are called: ``KubePodCrashLooping``,
``etcdHighFsyncDurations``, ``vm_rows_ignored``, ``日志泛滥告警``, or a rule title
such as Grafana's ``High CPU usage on node``. It is rejected when it is
- empty (``alert_name_empty``) or longer than 160 characters (``alert_name_too_long``);
- an address: IPv4/IPv6 with or without port, ``host:port``, a URL or an e-mail (``alert_name_address``);
- a time, a date, a duration or a bare number (``alert_name_time``);
- a Kubernetes-style object name: all lowercase ``[a-z0-9.-]`` with a dash, like
  ``amamba-jenkins-0``, ``vmalert-x-7b5c9d8f6-hk2lq``, ``insight-system`` or a UUID
  (``alert_name_workload``) — namespaces, pods, nodes and cluster ids look like that, rules do not;
- a severity or status word (``警告``, ``critical``, ``P2``, ``firing``): a shifted column (``alert_name_severity``);
- prose: several words starting in lower case, more than ten words, sentence punctuation, or the
  text of several table cells (``alert_name_sentence``).

A severity cell (a table column the layout has) must hold a severity: a known word, ``P1``–``P4``,
or a short single token (unknown words are P3, as before). Empty is ``severity_missing``; a time,
address, object name, number over two digits or several words is ``severity_invalid``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from producers.mail.errors import MailParseError
from producers.mail.registry import Template, normalize_key

MAX_ALERT_NAME = 160

#: The bounded set of reason codes a rejected row carries (also the metric label).
REASONS = (
    "alert_name_empty",
    "alert_name_too_long",
    "alert_name_address",
    "alert_name_time",
    "alert_name_workload",
    "alert_name_severity",
    "alert_name_sentence",
    "severity_missing",
    "severity_invalid",
)

_IPV4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_ADDRESS = re.compile(
    rf"^(?:{_IPV4}(?::\d{{1,5}})?|\[?[0-9a-f:]*:[0-9a-f:]+\]?(?::\d{{1,5}})?|[\w.-]+:\d{{1,5}})$"
    r"|://|^[\w.+-]+@[\w-]+\.[\w.-]+$",
    re.IGNORECASE,
)
_TIME = re.compile(
    r"^\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}|^\d{1,2}:\d{2}(?::\d{2})?\b|^[\d\s.,:+\-%]+$|^\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)$",
    re.IGNORECASE,
)
_CLOCK = re.compile(r"^\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?$")
_OBJECT_NAME = re.compile(r"^(?=[^-]*-)[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_STATUS_WORDS = frozenset(
    normalize_key(w) for w in ("firing", "resolved", "告警中", "触发中", "已恢复", "已解决", "恢复", "未恢复")
)
_LEVEL = re.compile(r"^p[0-5]$", re.IGNORECASE)
_SENTENCE_PUNCT = re.compile(r"[。！？；]|[.!?;]\s|[.。]$")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row of a mail that is not an alert, and why: the mail's good rows go on without it."""

    where: str
    reason: str
    detail: str

    def describe(self) -> str:
        return f"{self.where or 'row'}: {self.reason}: {self.detail}"


def _quote(value: str) -> str:
    return repr(value[:80])


def _is_severity_word(value: str, tpl: Template, overrides: Mapping[str, str] | None) -> bool:
    key = normalize_key(value)
    if not key:
        return False
    if _LEVEL.match(key) or key in tpl.severity_map:
        return True
    return bool(overrides) and any(normalize_key(w) == key for w in overrides or {})


def alert_name_problem(name: str, tpl: Template, overrides: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(reason code, detail) when ``name`` is not an alert name, else None."""
    name = name.strip()
    if not name:
        return "alert_name_empty", "the alert-name cell is empty"
    if "\t" in name:
        return "alert_name_sentence", f"{_quote(name)} runs over several table cells, not one alert name"
    if len(name) > MAX_ALERT_NAME:
        return "alert_name_too_long", f"{len(name)} characters, more than {MAX_ALERT_NAME}"
    if _CLOCK.match(name):
        return "alert_name_time", f"{_quote(name)} is a time, not an alert name"
    if _ADDRESS.search(name):
        return "alert_name_address", f"{_quote(name)} is an address, not an alert name"
    if _TIME.search(name) or not _LETTER.search(name):
        return "alert_name_time", f"{_quote(name)} is a time or a number, not an alert name"
    if _OBJECT_NAME.match(name):
        return "alert_name_workload", f"{_quote(name)} looks like a namespace/pod/node name, not an alert name"
    if _is_severity_word(name, tpl, overrides) or normalize_key(name) in _STATUS_WORDS:
        return "alert_name_severity", f"{_quote(name)} is a severity or status word, not an alert name"
    words = name.split()
    if len(words) > 1 and not _CJK.search(name[0]) and (name[0].islower() or len(words) > 10):
        return "alert_name_sentence", f"{_quote(name)} reads like prose, not an alert name"
    if _SENTENCE_PUNCT.search(name):
        return "alert_name_sentence", f"{_quote(name)} reads like a sentence, not an alert name"
    return None


def severity_problem(value: str, tpl: Template, overrides: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(reason code, detail) when a severity cell that the layout has holds no severity, else None."""
    value = value.strip()
    if not value:
        return "severity_missing", "the severity cell is empty"
    if _is_severity_word(value, tpl, overrides):
        return None
    if value.isdigit() and len(value) <= 2:
        return None  # numeric levels (Zabbix 0–5): unknown, so P3, but a level
    if (
        len(value) > 24
        or len(value.split()) > 3
        or _ADDRESS.search(value)
        or _TIME.search(value)
        or _OBJECT_NAME.match(value)
    ):
        return "severity_invalid", f"{_quote(value)} is not a severity"
    return None


def check_row(
    fields: Mapping[str, str], where: str, tpl: Template, overrides: Mapping[str, str] | None = None
) -> RejectedRow | None:
    """Why the row with these canonical ``fields`` is not an alert, or None when it is one.

    The severity is checked in table rows only: a table cell can be shifted into the severity
    column, while a ``severity = ...`` label line (Alertmanager, Grafana) says what it is, whatever
    value a rule author chose for it.
    """
    problem = alert_name_problem(fields.get("alert", ""), tpl, overrides)
    if problem is None and "severity" in fields and tpl.engine == "html_table":
        problem = severity_problem(fields["severity"], tpl, overrides)
    if problem is None:
        return None
    return RejectedRow(where, problem[0], problem[1])


class RejectedRowsError(MailParseError):
    """Some rows of a mail are not alerts: the dead-letter record of the mail names each and why.

    Raised by nobody: the normalize stage builds it to dead-letter the mail alongside the alerts of
    its good rows, so the whole mail is kept for a replay once the layout is fixed.
    """

    def __init__(self, rows: tuple[RejectedRow, ...], alerts: int) -> None:
        shown = "; ".join(r.describe() for r in rows[:20])
        more = f" (and {len(rows) - 20} more)" if len(rows) > 20 else ""
        super().__init__(f"rejected_rows: {len(rows)} row(s) are not alerts, {alerts} alert(s) kept: {shown}{more}")
        self.rows = rows
