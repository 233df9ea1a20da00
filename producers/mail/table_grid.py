"""An HTML table as a grid of slots: ``rowspan``/``colspan`` expanded, nested tables kept inside their cell.

Mail digests merge cells (a cluster cell with ``rowspan`` over the alerts of that
cluster, ``colspan`` group headers over two header rows). Reading ``<td>``s one
after the other then shifts every later column of a covered row, and a workload
lands in the alert-name column. This module follows the HTML table model
(WHATWG "forming a table") closely enough for mail: each row group (``thead``,
``tbody``, ``tfoot``, or bare ``tr``s) is laid out on its own, a cell occupies
every slot it spans, ``rowspan=0`` spans to the end of its row group, spans are
clipped at the group's end, and a row that is short stays short (``None`` slots).

Only direct rows and cells of the table are read; a table inside a cell is part
of that cell's text and never adds rows or cells to the outer grid.

No maintained library does this on lxml trees (the PyPI candidates are small,
unmaintained BeautifulSoup scripts), and lxml is what the parser uses for speed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import lxml.etree  # type: ignore[import-untyped]

from producers.mail.htmltext import Element, collapse

#: Wider tables are cut here: no alert table has more columns, and it bounds hostile ``colspan``s.
MAX_COLUMNS = 64
#: The HTML spec's own caps on spans.
_MAX_COLSPAN = 1000
_MAX_ROWSPAN = 65534

_STRING = lxml.etree.XPath("string()")
_NESTED = lxml.etree.XPath("boolean(.//table)")
_ROW_TAGS = frozenset({"thead", "tbody", "tfoot"})
_CELL_TAGS = frozenset({"td", "th"})


@dataclass(frozen=True, slots=True)
class Slot:
    """One cell as it sits in the grid; a spanning cell is the same ``Slot`` in every slot it covers."""

    text: str
    #: A ``<th>`` cell.
    header: bool
    #: Grid row and column of the cell's top-left slot: a slot whose row differs from its own row is
    #: carried down by ``rowspan``, one whose column differs is a ``colspan`` copy.
    row: int
    col: int
    colspan: int = 1


@dataclass(frozen=True, slots=True)
class GridRow:
    """One ``<tr>`` laid out: ``slots[c]`` is the cell covering column ``c`` (None: the row has none there)."""

    index: int
    slots: tuple[Slot | None, ...]

    def own(self) -> list[Slot]:
        """The cells that start in this row (each once), left to right."""
        return [s for c, s in enumerate(self.slots) if s is not None and s.row == self.index and s.col == c]

    def carried(self) -> bool:
        """Whether a cell of a row above reaches into this row (``rowspan``)."""
        return any(s is not None and s.row != self.index for s in self.slots)

    def texts(self) -> list[str]:
        return [s.text if s is not None else "" for s in self.slots]


def cell_text(cell: Element) -> str:
    """A cell's visible text; a table nested in it reads as its cells' texts separated by blanks."""
    if not len(cell) or not _NESTED(cell):  # most cells have no child element at all: skip the XPath
        return collapse(str(_STRING(cell)))
    parts: list[str] = []
    if cell.text:
        parts.append(cell.text)
    for el in cell.iterdescendants():
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in ("td", "th", "tr", "br", "p", "div", "li"):
            parts.append(" ")
        if el.text and tag:
            parts.append(el.text)
        if el.tail:
            parts.append(el.tail)
    return collapse("".join(parts))


def _span(cell: Element, name: str, cap: int, default: int) -> int:
    raw = cell.get(name)
    if raw is None:
        return default
    digits = "".join(ch for ch in raw.strip() if ch.isdigit())[:6]
    if not digits:
        return default
    return min(int(digits), cap)


def _row_groups(table: Element) -> Iterator[list[Element]]:
    """The table's rows by row group, in document order: consecutive bare ``tr``s form one group."""
    bare: list[Element] = []
    for child in table:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag == "tr":
            bare.append(child)
        elif tag in _ROW_TAGS:
            if bare:
                yield bare
                bare = []
            yield [r for r in child if r.tag == "tr"]
    if bare:
        yield bare


def grid_rows(table: Element, max_rows: int) -> Iterator[GridRow]:
    """The table's rows laid out on one column grid, at most ``max_rows`` of them."""
    index = 0
    for group in _row_groups(table):
        # column -> (slot, rows it still covers below the current one)
        pending: dict[int, tuple[Slot, int]] = {}
        for position, tr in enumerate(group):
            if index >= max_rows:
                return
            carried = {c: s for c, (s, _left) in pending.items()}
            slots: list[Slot | None] = []
            col = 0
            for cell in tr:
                tag = cell.tag
                if tag not in _CELL_TAGS:
                    continue
                while col in carried:
                    col += 1
                if col >= MAX_COLUMNS:
                    break
                attrib = cell.attrib
                colspan = rowspan = 1
                if "colspan" in attrib or "rowspan" in attrib:
                    colspan = max(1, _span(cell, "colspan", _MAX_COLSPAN, 1))
                    rowspan = _span(cell, "rowspan", _MAX_ROWSPAN, 1)
                    if rowspan == 0:  # "to the end of the row group"
                        rowspan = len(group) - position
                    rowspan = max(1, min(rowspan, len(group) - position))
                slot = Slot(cell_text(cell), tag == "th", index, col, colspan)
                if colspan == 1 and not carried and len(slots) == col:  # the common case: no span anywhere
                    slots.append(slot)
                    if rowspan > 1:
                        pending[col] = (slot, rowspan)
                    col += 1
                    continue
                for c in range(col, min(col + colspan, MAX_COLUMNS)):
                    if c in carried:  # overlapping spans: the earlier cell keeps the slot, as browsers do
                        continue
                    while len(slots) <= c:
                        slots.append(None)
                    slots[c] = slot
                    if rowspan > 1:
                        pending[c] = (slot, rowspan)
                col += colspan
            if carried:
                for c, s in carried.items():
                    while len(slots) <= c:
                        slots.append(None)
                    if slots[c] is None:
                        slots[c] = s
            if pending:
                # Every span still open loses this row; one that reached its last row is done.
                pending = {c: (s, left - 1) for c, (s, left) in pending.items() if left > 1}
            yield GridRow(index, tuple(slots))
            index += 1
