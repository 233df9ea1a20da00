"""An HTML table as the grid a reader sees: merged cells fill what they cover, nested tables stay in their cell."""

from __future__ import annotations

from producers.mail.htmltext import parse_html
from producers.mail.table_grid import MAX_COLUMNS, grid_rows


def _grid(html: str, max_rows: int = 1000) -> list[list[str]]:
    root = parse_html(html)
    assert root is not None
    table = root.find(".//table")
    return [row.texts() for row in grid_rows(table, max_rows)]


def test_a_rowspan_cell_fills_the_rows_it_covers_and_nothing_shifts() -> None:
    html = """<table>
      <tr><th>集群</th><th>告警名称</th><th>级别</th></tr>
      <tr><td rowspan="3">HK</td><td>A1</td><td>严重</td></tr>
      <tr><td>A2</td><td>警告</td></tr>
      <tr><td>A3</td><td>提示</td></tr>
      <tr><td>SG</td><td>A4</td><td>警告</td></tr>
    </table>"""
    assert _grid(html) == [
        ["集群", "告警名称", "级别"],
        ["HK", "A1", "严重"],
        ["HK", "A2", "警告"],
        ["HK", "A3", "提示"],
        ["SG", "A4", "警告"],
    ]


def test_a_rowspan_in_a_middle_column_keeps_the_later_columns_in_place() -> None:
    html = """<table>
      <tr><td>A1</td><td rowspan="2">ns-a</td><td>w1</td></tr>
      <tr><td>A2</td><td>w2</td></tr>
    </table>"""
    assert _grid(html) == [["A1", "ns-a", "w1"], ["A2", "ns-a", "w2"]]


def test_colspan_copies_the_cell_into_every_column_it_spans() -> None:
    html = """<table>
      <tr><th rowspan="2">告警名称</th><th colspan="2">对象</th><th rowspan="2">次数</th></tr>
      <tr><th>命名空间</th><th>工作负载</th></tr>
      <tr><td>A1</td><td>ns</td><td>w</td><td>3</td></tr>
    </table>"""
    assert _grid(html) == [
        ["告警名称", "对象", "对象", "次数"],
        ["告警名称", "命名空间", "工作负载", "次数"],
        ["A1", "ns", "w", "3"],
    ]


def test_spans_report_where_a_slot_came_from() -> None:
    root = parse_html('<table><tr><td rowspan="2" colspan="2">x</td><td>y</td></tr><tr><td>z</td></tr></table>')
    rows = list(grid_rows(root.find(".//table"), 10))
    assert [s.text for s in rows[1].own()] == ["z"]
    assert rows[1].carried() and not rows[0].carried()
    assert [s.text for s in rows[0].own()] == ["x", "y"]


def test_rowspan_zero_spans_to_the_end_of_its_row_group_and_no_further() -> None:
    html = """<table>
      <tbody><tr><td rowspan="0">g1</td><td>a</td></tr><tr><td>b</td></tr></tbody>
      <tbody><tr><td>g2</td><td>c</td></tr></tbody>
    </table>"""
    assert _grid(html) == [["g1", "a"], ["g1", "b"], ["g2", "c"]]


def test_a_rowspan_larger_than_the_table_is_clipped() -> None:
    html = '<table><tr><td rowspan="999999">c</td><td>a</td></tr><tr><td>b</td></tr></table>'
    assert _grid(html) == [["c", "a"], ["c", "b"]]


def test_a_short_row_stays_short_and_a_hostile_colspan_is_capped() -> None:
    html = '<table><tr><td>a</td><td>b</td><td>c</td></tr><tr><td>d</td></tr></table>'
    assert _grid(html) == [["a", "b", "c"], ["d"]]
    wide = _grid('<table><tr><td colspan="100000">x</td><td>y</td></tr></table>')
    assert len(wide[0]) == MAX_COLUMNS and set(wide[0]) == {"x"}


def test_a_nested_table_stays_inside_its_cell() -> None:
    html = """<table>
      <tr><th>告警名称</th><th>级别</th><th>描述</th></tr>
      <tr><td><table><tr><td>RPCErrors</td></tr></table></td><td>严重</td>
          <td><table><tr><th>k</th><th>v</th></tr><tr><td>pod</td><td>vminsert-0</td></tr></table></td></tr>
    </table>"""
    assert _grid(html) == [["告警名称", "级别", "描述"], ["RPCErrors", "严重", "k v pod vminsert-0"]]


def test_the_row_cap_bounds_the_work() -> None:
    rows = "".join(f'<tr><td rowspan="5">c</td><td>{i}</td></tr>' for i in range(50))
    assert len(_grid(f"<table>{rows}</table>", max_rows=7)) == 7
