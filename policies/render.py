"""Templates (``${var}``, ``${var|re}``) and variables taken from an event, validated before any use.

Raw label text never reaches a template: a variable is read from the event, transformed, and must
match its declared format first; PromQL templates additionally escape every value they insert.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from policies.catalog import VAR_SOURCES
from policies.errors import LabelValidationError, PolicyError
from policies.model import VarSpec
from policies.validate import TRANSFORMS, is_valid, preview, promql_escape, promql_regex_escape
from schemas.records import AlertEvent

_TOKEN: Final = re.compile(r"\$\$|\$\{(?P<var>[a-z][a-z0-9_]*)(?:\|(?P<filter>[a-z_]+))?\}|\$")
_SOURCE: Final = re.compile(r"(?P<base>labels|annotations)\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)|(?P<plain>[a-z_]+)")
TEMPLATE_FILTERS: Final = frozenset({"re"})


@dataclass(frozen=True)
class Placeholder:
    var: str
    filter: str | None
    start: int
    end: int


def parse_template(template: str) -> list[Placeholder]:
    """Placeholders of ``template``; a ``$`` that is not ``$$`` or ``${var}`` is an error."""
    out: list[Placeholder] = []
    for match in _TOKEN.finditer(template):
        text = match.group(0)
        if text == "$$":
            continue
        if text == "$":
            raise PolicyError(f"stray '$' at offset {match.start()} (write $$ for a literal dollar)")
        if match["filter"] is not None and match["filter"] not in TEMPLATE_FILTERS:
            raise PolicyError(f"unknown template filter {match['filter']!r} (known: re)")
        out.append(Placeholder(match["var"], match["filter"], match.start(), match.end()))
    return out


def check_promql_placement(template: str) -> None:
    """Every placeholder of a PromQL template must sit inside a double-quoted string; ``=~`` needs ``|re``.

    Escaping is only correct inside a string literal, so a placeholder anywhere else (a metric
    name, a duration, a bare number) could change the query's structure.
    """
    placeholders = parse_template(template)
    strings = _string_spans(template)
    for ph in placeholders:
        span = next(((a, b) for a, b in strings if a < ph.start and ph.end <= b), None)
        if span is None:
            raise PolicyError(f"placeholder ${{{ph.var}}} must be inside a double-quoted PromQL string")
        regex_matcher = re.search(r"[=!]~\s*$", template[: span[0]]) is not None
        if regex_matcher and ph.filter != "re":
            raise PolicyError(f"placeholder ${{{ph.var}}} inside a =~/!~ matcher must use ${{{ph.var}|re}}")
        if not regex_matcher and ph.filter == "re":
            raise PolicyError(f"placeholder ${{{ph.var}|re}} is only for =~/!~ matchers")


def _string_spans(text: str) -> list[tuple[int, int]]:
    """(index of opening quote, index of closing quote) of each double-quoted string."""
    spans: list[tuple[int, int]] = []
    i, start = 0, -1
    while i < len(text):
        ch = text[i]
        if start < 0:
            if ch == '"':
                start = i
        elif ch == "\\":
            i += 1
        elif ch == '"':
            spans.append((start, i))
            start = -1
        i += 1
    return spans


def check_source(source: str) -> None:
    """Reject a variable source the resolver would not understand (e.g. ``labels.pod|statefulset_of_pod``)."""
    base, *transforms = source.split("|")
    match = _SOURCE.fullmatch(base)
    if match is None or (match["plain"] is not None and match["plain"] not in VAR_SOURCES):
        raise PolicyError(
            f"unknown variable source {base!r} (use labels.<name>, annotations.<name> "
            f"or one of {', '.join(sorted(VAR_SOURCES))})"
        )
    for name in transforms:
        if name not in TRANSFORMS:
            raise PolicyError(f"unknown transform {name!r} (known: {', '.join(sorted(TRANSFORMS))})")


def _lookup(base: str, event: AlertEvent, context: Mapping[str, str]) -> str:
    match = _SOURCE.fullmatch(base)
    if match is None:
        return ""
    if match["base"] == "labels":
        return event.labels.get(match["key"], "")
    if match["base"] == "annotations":
        return event.annotations.get(match["key"], "")
    plain = match["plain"]
    event_fields = {
        "alert": event.alert,
        "tenant": event.tenant,
        "severity": event.severity,
        "status": str(event.status),
    }
    return event_fields.get(plain, context.get(plain, ""))


@dataclass(frozen=True)
class ResolvedVars:
    """Variables that passed validation, and why the others did not (missing or invalid)."""

    values: dict[str, str]
    problems: dict[str, str]


def resolve_vars(
    specs: Mapping[str, VarSpec], event: AlertEvent, context: Mapping[str, str] | None = None
) -> ResolvedVars:
    """Take each variable's first non-empty source, transform it, and keep it only if it has its format.

    An invalid first value is a problem, not a reason to try the next source: failing closed keeps
    a hostile label from being swapped silently for another value.
    """
    ctx = context or {}
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    for name, spec in specs.items():
        raw = ""
        used = ""
        for source in spec.sources:
            base, *transforms = source.split("|")
            raw = _lookup(base, event, ctx)
            if raw:
                for transform in transforms:
                    raw = TRANSFORMS[transform](raw)
                used = base
                break
        if not raw:
            problems[name] = f"no value for {name} (looked at {', '.join(spec.sources)})"
        elif not is_valid(spec.format, raw):
            problems[name] = f"{used} value {preview(raw)} is not a valid {spec.format}"
        else:
            values[name] = raw
    return ResolvedVars(values, problems)


def render(template: str, values: Mapping[str, str], *, promql: bool = False) -> str:
    """Fill ``template``; raise LabelValidationError naming the first variable without a valid value."""
    escape: Callable[[str], str] = promql_escape if promql else (lambda v: v)
    out: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(template):
        out.append(template[pos : match.start()])
        pos = match.end()
        text = match.group(0)
        if text == "$$":
            out.append("$")
            continue
        var = match["var"]
        if var is None or var not in values:
            raise LabelValidationError(f"variable {var!r} has no valid value")
        value = values[var]
        out.append(promql_regex_escape(value) if match["filter"] == "re" else escape(value))
    out.append(template[pos:])
    return "".join(out)
