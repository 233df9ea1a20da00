"""The engines YAML templates drive: ``html_table`` and ``kv_lines``.

An engine turns a decoded mail into ``RawAlert`` rows (strings as found) and a
note saying why it found none; ``normalize`` makes AlertEvents of the rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from producers.mail.htmltext import CELLS, ROWS, Element, cell_text, html_lines, parse_html
from producers.mail.mime import DecodedMail
from producers.mail.registry import Template, normalize_key
from schemas.records import AlertStatus

#: Canonical fields that are not labels: they become AlertEvent fields or annotations.
SPECIAL_FIELDS = frozenset({"alert", "severity", "status", "first_occur", "times"})
ANNOTATION_FIELDS = frozenset({"description", "summary", "value", "message", "runbook_url"})
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]{0,63}$")
_MARKER_TAGS = frozenset(
    {"h1", "h2", "h3", "h4", "h5", "h6", "p", "div", "span", "strong", "b", "font", "em", "caption", "li",
     "center", "label"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class EngineLimits:
    max_alerts: int = 500
    max_rows: int = 20_000
    max_tables: int = 200
    max_lines: int = 50_000


@dataclass(slots=True)
class RawAlert:
    status: AlertStatus
    fields: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def put(self, canonical: str | None, key: str, value: str, mode: str = "fields") -> None:
        """Route one key/value to fields, labels or annotations; the first value of a key wins."""
        if canonical in SPECIAL_FIELDS:
            self.fields.setdefault(canonical, value)
        elif canonical in ANNOTATION_FIELDS:
            self.annotations.setdefault(canonical, value)
        elif canonical is not None:
            self.labels.setdefault(canonical, value)
        elif mode == "annotations":
            self.annotations.setdefault(key, value)
        elif _LABEL_NAME.match(key):
            self.labels.setdefault(key, value)
        else:
            self.annotations.setdefault(key, value)


@dataclass(slots=True)
class EngineResult:
    alerts: list[RawAlert]
    note: str = ""
    truncated: bool = False


class MailView:
    """One decoded mail with its HTML trees and line lists built once, shared by all templates."""

    def __init__(self, mail: DecodedMail, limits: EngineLimits) -> None:
        self.mail = mail
        self.limits = limits
        self._trees: list[Element] | None = None
        self._html_lines: list[list[str]] | None = None

    def trees(self) -> list[Element]:
        if self._trees is None:
            parsed = (parse_html(text) for text in self.mail.of_kind("html"))
            self._trees = [t for t in parsed if t is not None]
        return self._trees

    def lines(self, prefer: str) -> list[list[str]]:
        texts = self.mail.of_kind("text")
        if prefer == "text" and texts:
            return [self._text_lines(t) for t in texts]
        if self._html_lines is None:
            self._html_lines = [html_lines(t, self.limits.max_lines) for t in self.trees()]
        if self._html_lines:
            return self._html_lines
        return [self._text_lines(t) for t in texts]

    def _text_lines(self, text: str) -> list[str]:
        lines = (line.strip() for line in text.splitlines()[: self.limits.max_lines])
        # Quoted forwards ("> 规则名称: X") are still the alert.
        return [re.sub(r"^(>\s*)+", "", line) for line in lines if line]


def html_table(view: MailView, tpl: Template) -> EngineResult:
    """Rows of every table whose header row names the alert column and enough other known columns."""
    limits = view.limits
    alerts: list[RawAlert] = []
    tables_seen = 0
    headed = 0
    rows_seen = 0
    trees = view.trees()
    if not trees:
        return EngineResult([], "no HTML body")
    for root in trees:
        for table, table_status in _tables_with_status(root, tpl, limits.max_tables - tables_seen):
            tables_seen += 1
            status = table_status
            header: list[str | None] | None = None
            raw_header: list[str] = []
            for row in ROWS(table):
                rows_seen += 1
                if rows_seen > limits.max_rows:
                    return EngineResult(alerts, f"stopped after {limits.max_rows} rows", truncated=True)
                cells = CELLS(row)
                texts = [cell_text(c) for c in cells]
                # Data rows are the bulk: only a row of <th> (or any row before a header) can be one.
                if header is None or (cells and cells[0].tag == "th"):
                    mapped = [tpl.synonyms.get(normalize_key(t)) if len(t) <= 40 else None for t in texts]
                    if "alert" in mapped and sum(m is not None for m in mapped) >= tpl.min_header_fields:
                        header, raw_header = mapped, texts
                        headed += 1
                        continue
                if header is None:
                    continue
                filled = [t for t in texts if t]
                if len(filled) == 1 and (section := tpl.section_of(filled[0])) is not None:
                    status = section
                    continue
                alert = RawAlert(status)
                for canonical, name, value in zip(header, raw_header, texts, strict=False):
                    if value and name:
                        alert.put(canonical, name, value)
                if alert.fields.get("alert"):
                    if len(alerts) >= limits.max_alerts:
                        return EngineResult(alerts, f"stopped at {limits.max_alerts} alerts", truncated=True)
                    alerts.append(alert)
    if alerts:
        return EngineResult(alerts)
    if headed:
        return EngineResult([], f"{headed} alert table(s) found but no data rows")
    return EngineResult([], f"no table with an alert-name header among {tables_seen} table(s)")


def _tables_with_status(root: Element, tpl: Template, budget: int) -> list[tuple[Element, AlertStatus]]:
    """Tables in document order, each with the section heading ("告警中"/"已恢复") above it."""
    status = tpl.default_status
    out: list[tuple[Element, AlertStatus]] = []
    for el in root.iter():
        tag = el.tag
        if tag == "table":
            if len(out) >= budget:
                break
            out.append((el, status))
        elif tag in _MARKER_TAGS and el.text:
            text = el.text.strip()
            if text and (section := tpl.section_of(text)) is not None:
                status = section
    return out


class _Collector:
    """Alerts found so far, capped; counts what the cap dropped instead of stopping mid-block."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.alerts: list[RawAlert] = []
        self.dropped = 0

    def add(self, alert: RawAlert | None) -> None:
        if alert is None or not alert.fields.get("alert"):
            return
        if len(self.alerts) >= self.cap:
            self.dropped += 1
        else:
            self.alerts.append(alert)


def kv_lines(view: MailView, tpl: Template) -> EngineResult:
    """Key/value lines ("规则名称: X", "alertname = X") grouped into alerts by start/end markers."""
    all_lines = view.lines(tpl.prefer)
    if not any(all_lines):
        return EngineResult([], "no text")
    out = _Collector(view.limits.max_alerts)
    kv_seen = sum(_read_blocks(lines, tpl, out) for lines in all_lines)
    if out.dropped:
        return EngineResult(out.alerts, f"stopped at {out.cap} alerts, {out.dropped} dropped", truncated=True)
    if out.alerts:
        return EngineResult(out.alerts)
    if kv_seen:
        return EngineResult([], f"{kv_seen} key/value line(s) but no alert-name key")
    return EngineResult([], "no key/value lines")


def _read_blocks(lines: list[str], tpl: Template, out: _Collector) -> int:
    """One body's lines into ``out``; returns how many key/value lines it saw."""
    status = tpl.default_status
    current: RawAlert | None = None
    mode = "fields"
    kv_seen = 0
    for line in lines:
        if (section := tpl.section_of(line)) is not None:
            out.add(current)
            current, status = None, section
            continue
        if current is not None:
            for name, rx in tpl.line_fields:
                if (found := rx.search(line)) is not None and found.group("value"):
                    current.put(tpl.synonyms.get(normalize_key(name), name), name, found.group("value"))
        if _any(tpl.record_end, line):
            out.add(current)
            current = None
            continue
        if _any(tpl.record_start, line):
            out.add(current)
            current, mode = RawAlert(status), "labels"
            if not tpl.kv_pattern.match(line):
                continue
        if current is not None and _any(tpl.annotations_start, line):
            mode = "annotations"
            continue
        if current is not None and _any(tpl.labels_start, line):
            mode = "labels"
            continue
        match = tpl.kv_pattern.match(line)
        if match is None:
            continue
        kv_seen += 1
        key, value = match.group("key").strip(), match.group("value").strip()
        canonical = tpl.synonyms.get(normalize_key(key))
        if current is None:
            # Without a start marker, an alert-name key starts a block; other keys outside one are noise.
            if tpl.record_start or canonical != "alert":
                continue
            current = RawAlert(status)
        elif canonical == "alert" and "alert" in current.fields:
            out.add(current)
            current = RawAlert(status)
        if value:
            current.put(canonical, key, value, mode)
    out.add(current)
    return kv_seen


def _any(patterns: tuple[re.Pattern[str], ...], line: str) -> bool:
    return any(rx.search(line) for rx in patterns)


ENGINES: dict[str, Callable[[MailView, Template], EngineResult]] = {
    "html_table": html_table,
    "kv_lines": kv_lines,
}
