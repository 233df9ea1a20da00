"""The engines YAML templates drive: ``html_table`` and ``kv_lines``.

An engine turns a decoded mail into ``RawAlert`` rows (strings as found) and a
note saying why it found none; ``normalize`` makes AlertEvents of the rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from producers.mail.htmltext import Element, html_lines, parse_html
from producers.mail.mime import DecodedMail
from producers.mail.registry import Template, normalize_key
from producers.mail.table_grid import GridRow, Slot, grid_rows
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
    #: Where in the mail the alert was read ("table 1 row 4", "block 2"), for the reason of a rejected row.
    where: str = ""
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
        self._html_lines: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}

    def trees(self) -> list[Element]:
        if self._trees is None:
            parsed = (parse_html(text) for text in self.mail.of_kind("html"))
            self._trees = [t for t in parsed if t is not None]
        return self._trees

    def lines(self, prefer: str, links: tuple[tuple[str, re.Pattern[str]], ...] = ()) -> list[list[str]]:
        """Each body as lines; ``links`` (name, anchor-text regex): such a link's href becomes a ``name = href``
        line before it (the template's ``links``), so a kv template can keep e.g. the rule's Source URL."""
        texts = self.mail.of_kind("text")
        if prefer == "text" and texts:
            return [self._text_lines(t) for t in texts]
        key = tuple((name, rx.pattern) for name, rx in links)
        if key not in self._html_lines:
            self._html_lines[key] = [html_lines(t, self.limits.max_lines, links) for t in self.trees()]
        if self._html_lines[key]:
            return self._html_lines[key]
        return [self._text_lines(t) for t in texts]

    def _text_lines(self, text: str) -> list[str]:
        lines = (line.strip() for line in text.splitlines()[: self.limits.max_lines])
        # Quoted forwards ("> 规则名称: X") are still the alert.
        return [re.sub(r"^(>\s*)+", "", line) for line in lines if line]


def html_table(view: MailView, tpl: Template) -> EngineResult:
    """Rows of every table whose header names the alert column and enough other known columns.

    Tables are read as grids (:mod:`producers.mail.table_grid`): merged cells fill every slot they
    cover, so a ``rowspan`` cluster cell or a ``colspan`` group header never shifts a column. A table
    nested in a cell of an alert table is part of that cell, not a table of alerts of its own.
    """
    limits = view.limits
    alerts: list[RawAlert] = []
    tables_seen = 0
    headed = 0
    rows_seen = 0
    trees = view.trees()
    if not trees:
        return EngineResult([], "no HTML body")
    for root in trees:
        inside: set[Element] = set()
        for table, table_status in _tables_with_status(root, tpl, limits.max_tables - tables_seen):
            tables_seen += 1
            if table in inside:
                continue
            reader = _TableReader(tpl, table_status, tables_seen)
            for row in grid_rows(table, limits.max_rows - rows_seen + 1):
                rows_seen += 1
                if rows_seen > limits.max_rows:
                    return EngineResult(alerts, f"stopped after {limits.max_rows} rows", truncated=True)
                alert = reader.read(row)
                if alert is None:
                    continue
                if len(alerts) >= limits.max_alerts:
                    return EngineResult(alerts, f"stopped at {limits.max_alerts} alerts", truncated=True)
                alerts.append(alert)
            if reader.headers:
                headed += 1
                inside.update(t for t in table.iter("table") if t is not table)
    if alerts:
        return EngineResult(alerts)
    if headed:
        return EngineResult([], f"{headed} alert table(s) found but no data rows")
    return EngineResult([], f"no table with an alert-name header among {tables_seen} table(s)")


class _TableReader:
    """One table's rows in order: finds its header (one row, or two with group/sub-headers), then alerts."""

    def __init__(self, tpl: Template, status: AlertStatus, number: int) -> None:
        self.tpl = tpl
        self.status = status
        self.number = number
        #: canonical field per column, and the header text used to name unknown columns
        self.header: list[str | None] | None = None
        self.names: list[str] = []
        self.headers = 0
        self._header_rows: list[GridRow] = []
        self._previous: GridRow | None = None  # the row before, while no data row has been read

    def _map(self, text: str) -> str | None:
        return self.tpl.synonyms.get(normalize_key(text)) if text and len(text) <= 40 else None

    def _qualifies(self, mapped: list[str | None]) -> bool:
        return "alert" in mapped and sum(m is not None for m in mapped) >= self.tpl.min_header_fields

    def _layout(self, rows: list[GridRow]) -> tuple[list[str | None], list[str]]:
        """Per column: the canonical field and the name, from header rows top to bottom.

        A column's texts are joined first ("告警" over "名称" is 告警名称), then the lowest (most
        specific) text, then the ones above; a field two columns claim stays with the first whose
        own text names it, the other falls back to its group's field, else to none.
        """
        width = max(len(r.slots) for r in rows)
        choices: list[list[str | None]] = []
        names: list[str] = []
        for c in range(width):
            texts: list[str] = []
            for r in rows:
                slot = r.slots[c] if c < len(r.slots) else None
                if slot is not None and slot.text and (not texts or texts[-1] != slot.text):
                    texts.append(slot.text)
            names.append(texts[-1] if texts else "")
            options = ["".join(texts)] if len(texts) > 1 else []
            options += list(reversed(texts))
            mapped: list[str | None] = []
            for option in options:
                canonical = self._map(option)
                if canonical is not None and canonical not in mapped:
                    mapped.append(canonical)
            choices.append(mapped)
        header: list[str | None] = [m[0] if m else None for m in choices]
        for c, canonical in enumerate(header):
            if canonical is None or header.index(canonical) == c:
                continue
            alternatives = [m for m in choices[c][1:] if m not in header]
            header[c] = alternatives[0] if alternatives else None
        return header, names

    def _is_header(self, own: list[Slot]) -> bool:
        if not own:
            return False
        return self.header is None or own[0].header or (own[0].col == 0 and all(s.header for s in own))

    def read(self, row: GridRow) -> RawAlert | None:
        own = row.own()
        texts = row.texts()
        if self.header is not None and self._header_rows and self._continues_header(row):
            self._header_rows.append(row)
            self.header, self.names = self._layout(self._header_rows)
            return None
        if self._is_header(own):
            mapped = [self._map(t) for t in texts]
            candidates = [[row]]
            if self._previous is not None and self._header_like(self._previous):
                candidates.insert(0, [self._previous, row])
            for rows in candidates:
                header, names = self._layout(rows)
                if self._qualifies(header) or (len(rows) == 1 and self._qualifies(mapped)):
                    self.header, self.names = header, names
                    self._header_rows = rows
                    self.headers += 1
                    self._previous = None
                    return None
        if self.header is None:
            self._previous = row
            return None
        self._header_rows = []
        filled = [s for s in own if s.text]
        if not filled:
            return None  # a spacer, or a row holding only what a rowspan carries down
        width = len(self.header)
        if len(filled) == 1 and (len(own) == 1 or filled[0].colspan * 2 >= width):
            # One cell across the row: a section heading ("已恢复") or a note ("共 3 条"), never an alert.
            if (section := self.tpl.section_of(filled[0].text)) is not None:
                self.status = section
            return None
        alert = RawAlert(self.status, where=f"table {self.number} row {row.index + 1}")
        for canonical, name, value in zip(self.header, self.names, texts, strict=False):
            if value and name:
                alert.put(canonical, name, value)
        for canonical in ("alert", "severity"):
            if canonical in self.header:
                alert.fields.setdefault(canonical, "")  # the column is there, its cell is empty: say so
        return alert

    def _header_like(self, row: GridRow) -> bool:
        own = row.own()
        return bool(own) and all(s.header or (len(s.text) <= 40 and self._map(s.text) is not None) for s in own)

    def _continues_header(self, row: GridRow) -> bool:
        """A second header row: header cells reach into it (rowspan) and its own cells are header cells too."""
        last = self._header_rows[-1]
        reached = any(s is not None and s.row == last.index and s.row != row.index for s in row.slots)
        return reached and self._header_like(row)


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
    all_lines = view.lines(tpl.prefer, tpl.links)
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
    for number, line in enumerate(lines, 1):
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
            current, mode = RawAlert(status, where=f"line {number}"), "labels"
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
            current = RawAlert(status, where=f"line {number}")
        elif canonical == "alert" and "alert" in current.fields:
            out.add(current)
            current = RawAlert(status, where=f"line {number}")
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
