"""The metric names an alert's own expression reads, for classification: found in the source, tokenised, never run.

Alertmanager's ``generatorURL`` (webhook field, and the "Source" link of its default e-mail) is the
Prometheus graph link of the rule, with the PromQL in ``g0.expr``; vmalert's carries it when
``-external.alert.source`` is set (``vmui/#/?g0.expr=...`` puts it in the fragment, a Grafana
``explore?left={...}`` link in the JSON's ``queries[].expr``). Some sources give the expression
itself as an annotation. All of it is untrusted text: it is cut to a bounded size and only split
into tokens to pick out metric names; nothing is evaluated, compiled as a regex or sent anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from schemas.annotations import GENERATOR_URL

#: Annotation carrying the source's generator URL (producers put the webhook's ``generatorURL`` and the
#: mail's "Source" link here).
GENERATOR_URL_ANNOTATION: Final = GENERATOR_URL
#: Annotations that hold the expression itself (some templates and rule files copy it there).
EXPRESSION_ANNOTATIONS: Final = ("expr", "expression", "query", "promql")
#: More text than any real rule expression; past it the rest is ignored (linear work on hostile input).
MAX_EXPRESSION_CHARS: Final = 16_384

_TOKEN: Final = re.compile(
    r'"(?:[^"\\]|\\.)*"?'  # double-quoted string (an unterminated one runs to the end)
    r"|'(?:[^'\\]|\\.)*'?"  # single-quoted string
    r"|`[^`]*`?"  # raw string
    r"|#[^\n]*"  # comment
    r"|(?P<number>[0-9][0-9A-Za-z_.]*|\.[0-9][0-9A-Za-z_.]*)"  # numbers and durations (5m, 1e3, 0x1f)
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<punct>[{}()\[\]])"
    r"|[^\sA-Za-z0-9_:\"'`#{}()\[\]]+"  # operators
    r"|\s+",
    re.DOTALL,
)
_NAME_MATCHER: Final = re.compile(r'__name__\s*=\s*"(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"')
#: Keywords that look like names but are not metrics.
_KEYWORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
     "atan2", "inf", "nan", "start", "end"}
)  # fmt: skip
_TRAILING_NAME: Final = re.compile(r"[A-Za-z0-9_:]+$")
#: Keywords followed by a parenthesised list of label names.
_LABEL_LISTS: Final = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


def metric_names(expression: str) -> frozenset[str]:
    """Metric names selected by a PromQL/MetricsQL expression.

    A name counts when it is not a function (followed by ``(``), a keyword, a label name inside ``{...}``
    or a grouping list (``by (job)``), a string, a number or a duration in ``[...]``; ``{__name__="x"}``
    counts ``x``.
    """
    text = expression[:MAX_EXPRESSION_CHARS]
    if len(expression) > MAX_EXPRESSION_CHARS:  # a name cut in two is no name
        text = _TRAILING_NAME.sub("", text)
    names: set[str] = {m["name"] for m in _NAME_MATCHER.finditer(text)}
    tokens = [(m["name"], m["punct"]) for m in _TOKEN.finditer(text) if m["name"] or m["punct"]]
    braces = brackets = 0
    label_list_depth: int | None = None
    parens = 0
    for i, (name, punct) in enumerate(tokens):
        if punct is not None:
            if punct == "{":
                braces += 1
            elif punct == "}":
                braces = max(0, braces - 1)
            elif punct == "[":
                brackets += 1
            elif punct == "]":
                brackets = max(0, brackets - 1)
            elif punct == "(":
                parens += 1
            elif punct == ")":
                if label_list_depth is not None and parens == label_list_depth:
                    label_list_depth = None
                parens = max(0, parens - 1)
            continue
        if braces or brackets or label_list_depth is not None:
            continue
        following = tokens[i + 1][1] if i + 1 < len(tokens) else None
        lowered = name.lower()
        if lowered in _LABEL_LISTS:
            if following == "(":
                label_list_depth = parens + 1
            continue
        # A function (``rate(``) or an aggregation written ``sum by (job) (...)``.
        if lowered in _KEYWORDS or following == "(" or _is_grouping(tokens, i + 1):
            continue
        names.add(name)
    return frozenset(names)


def _is_grouping(tokens: list[tuple[str | None, str | None]], index: int) -> bool:
    return index < len(tokens) and (tokens[index][0] or "").lower() in ("by", "without")


def expressions_in_url(url: str) -> list[str]:
    """The expressions a generator URL carries: ``gN.expr`` in its query or fragment, Grafana ``left``/``panes``."""
    try:
        parts = urlsplit(url[: MAX_EXPRESSION_CHARS * 3])
    except ValueError:
        return []
    fragment_query = parts.fragment.partition("?")[2] if "?" in parts.fragment else ""
    found: list[str] = []
    for query in (parts.query, fragment_query):
        for key, value in parse_qsl(query, keep_blank_values=False):
            if re.fullmatch(r"g[0-9]{1,2}\.expr", key):
                found.append(value)
            elif key in ("left", "panes"):
                found.extend(_grafana_exprs(value))
    return found


def _grafana_exprs(value: str) -> Iterable[str]:
    try:
        data = json.loads(value)
    except ValueError:
        return []
    # {"queries": [...]} (explore ``left``), {"<pane>": {"queries": [...]}} (``panes``), or the older compact
    # list form ["now-1h", "now", "<datasource>", {"expr": ...}, ...] that vmalert's own -help shows.
    if isinstance(data, list):
        queries = data
    elif isinstance(data, dict) and "queries" in data:
        queries = data["queries"]
    elif isinstance(data, dict):
        queries = [q for pane in data.values() if isinstance(pane, dict) for q in pane.get("queries", [])]
    else:
        queries = []
    if not isinstance(queries, list):
        return []
    return [q["expr"] for q in queries if isinstance(q, dict) and isinstance(q.get("expr"), str)]


def alert_expressions(annotations: Mapping[str, str]) -> list[str]:
    """Every expression the alert carries about itself (annotation ``expr``..., the generator URL's)."""
    found = [annotations[key] for key in EXPRESSION_ANNOTATIONS if annotations.get(key)]
    url = annotations.get(GENERATOR_URL_ANNOTATION)
    if url:
        found.extend(expressions_in_url(url))
    return found


def alert_metric_names(annotations: Mapping[str, str]) -> frozenset[str]:
    """Metric names of every expression the alert carries; empty when it carries none."""
    names: set[str] = set()
    for expression in alert_expressions(annotations):
        names |= metric_names(expression)
    return frozenset(names)
