"""Load-time rules beyond types: references resolve, CEL and regexes compile, risk floors hold.

Each problem carries the path of the field it is about, so the loader can name ``file:line``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from policies.catalog import (
    ACTION_PARAMS,
    CONTEXT_NAMES,
    EVIDENCE_QUERY_FORMS,
    KIND_VALUES,
    RESTART_OPERATIONS,
    UNDOABLE_OPERATIONS,
)
from policies.compiled import CompiledClass, CompiledMatcher
from policies.correlation_spec import correlation_problems
from policies.errors import PolicyError
from policies.expr import Expression, compile_expression
from policies.model import ActionSpec, ClassPolicy, Matcher, PolicyDocument, VarSpec
from policies.render import check_promql_placement, check_source, parse_template
from policies.validate import FORMATS, is_valid
from policies.yamlsource import PathKey, format_path
from schemas.operations import QueryForm
from schemas.records import Approval, Risk

UNCLASSIFIED = "unclassified"
#: An ``expr_metrics`` entry: a Prometheus metric name, ``*`` standing for any run of name characters.
_METRIC_ENTRY = re.compile(r"[A-Za-z_:*][A-Za-z0-9_:*]*")

#: Formats safe to place in an unescaped (k8s, es, netprobe) evidence query: no spaces, quotes or operators.
_NAME_FORMATS = frozenset(
    {"dns1123_label", "dns1123_subdomain", "workload_name", "label_value", "instance", "prom_label_name"}
)

#: Restarting these is always high risk, whatever the file says (DESIGN.md safety rules).
_ALWAYS_HIGH_RESTART = re.compile(r"etcd|prometheus", re.IGNORECASE)
#: "Mass rule rollback": an action that rolls back rules wholesale is always high risk.
_RULE_ROLLBACK = re.compile(r"rollback.*rules?|rules?.*rollback|revert.*rules?", re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    path: PathKey
    message: str


def compile_document(doc: PolicyDocument) -> tuple[list[CompiledClass], list[Problem]]:
    """Every class compiled, or the full list of problems (all of them, so one edit fixes many)."""
    problems: list[Problem] = []
    compiled: list[CompiledClass] = []
    problems += _check_vars(doc.defaults.vars, ("defaults", "vars"))
    seen: dict[str, int] = {}
    for index, cls in enumerate(doc.classes):
        path: PathKey = ("classes", index)
        if cls.id == UNCLASSIFIED:
            problems.append(Problem((*path, "id"), f"{UNCLASSIFIED!r} is reserved for alerts no class matches"))
        elif cls.id in seen:
            problems.append(Problem((*path, "id"), f"duplicate class id {cls.id!r} (first at classes[{seen[cls.id]}])"))
        else:
            seen[cls.id] = index
        result, class_problems = _compile_class(cls, {**doc.defaults.vars, **cls.vars}, path)
        problems += class_problems
        if result is not None:
            compiled.append(result)
    problems += [Problem(path, message) for path, message in correlation_problems(doc.correlation, seen)]
    problems += _check_claims(doc)
    return compiled, problems


def _check_vars(specs: dict[str, VarSpec], path: PathKey) -> list[Problem]:
    problems: list[Problem] = []
    for name, spec in specs.items():
        if spec.format not in FORMATS:
            problems.append(
                Problem((*path, name, "format"), f"unknown format {spec.format!r}; known: {', '.join(FORMATS)}")
            )
        for i, source in enumerate(spec.sources):
            try:
                check_source(source)
            except PolicyError as exc:
                problems.append(Problem((*path, name, "from", i), exc.message))
    return problems


def _regex(pattern: str, path: PathKey, problems: list[Problem], flags: int = 0) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        problems.append(Problem(path, f"invalid regular expression {pattern!r}: {exc}"))
        return None


def _compile_matcher(m: Matcher, path: PathKey, problems: list[Problem]) -> CompiledMatcher | None:
    before = len(problems)
    patterns = bool(m.alert_contains or m.alert_regex or m.name_patterns)
    if not (m.alerts or patterns or m.expr_metrics or m.labels or m.labels_any or m.annotations):
        problems.append(Problem(path, "a matcher needs alerts, expr_metrics, labels, labels_any, annotations, "
                                      "name_patterns, alert_contains or alert_regex"))
    if m.alerts and patterns:
        problems.append(Problem(path, "exact alerts and name patterns rank differently: put the patterns "
                                      "(name_patterns, alert_contains, alert_regex) in a matcher of their own"))

    def fold(text: str) -> str:
        return text.casefold() if m.case_insensitive else text

    flags = re.IGNORECASE if m.case_insensitive else 0
    alert_rx = _regex(m.alert_regex, (*path, "alert_regex"), problems, flags) if m.alert_regex else None
    name_rx = [_regex(p, (*path, "name_patterns", i), problems, flags) for i, p in enumerate(m.name_patterns)]
    labels = {k: _regex(v, (*path, "labels", k), problems) for k, v in m.labels.items()}
    labels_any = {k: _regex(v, (*path, "labels_any", k), problems) for k, v in m.labels_any.items()}
    annotations = {k: _regex(v, (*path, "annotations", k), problems) for k, v in m.annotations.items()}
    exact: set[str] = set()
    wildcards: list[re.Pattern[str]] = []
    for i, name in enumerate(m.expr_metrics):
        if _METRIC_ENTRY.fullmatch(name) is None or name.strip("*") == "":
            problems.append(Problem((*path, "expr_metrics", i),
                                    f"{name!r} is not a metric name (letters, digits, _ and :, with * as a wildcard)"))
        elif "*" in name:
            wildcards.append(re.compile("[A-Za-z0-9_:]*".join(re.escape(part) for part in name.split("*"))))
        else:
            exact.add(name)
    if len(problems) > before:
        return None
    return CompiledMatcher(
        spec=m,
        alerts=frozenset(fold(a) for a in m.alerts),
        contains=tuple(fold(c) for c in m.alert_contains),
        alert_regex=alert_rx,
        labels={k: v for k, v in labels.items() if v is not None},
        labels_any={k: v for k, v in labels_any.items() if v is not None},
        name_patterns=tuple(rx for rx in name_rx if rx is not None),
        expr_exact=frozenset(exact),
        expr_wildcards=tuple(wildcards),
        annotations={k: v for k, v in annotations.items() if v is not None},
    )


def _unconditional_keys(m: Matcher) -> list[tuple[str, str]]:
    """What a matcher claims with nothing else to tell it apart: bare exact alert names or bare exact metrics."""
    if m.labels or m.labels_any or m.annotations:
        return []
    if m.alerts and not m.expr_metrics:
        return [("alert", a.casefold() if m.case_insensitive else a) for a in m.alerts]
    if m.expr_metrics and not m.alerts and not (m.alert_contains or m.alert_regex or m.name_patterns):
        return [("metric", e) for e in m.expr_metrics if "*" not in e]
    return []


def _check_claims(doc: PolicyDocument) -> list[Problem]:
    """Two classes claiming the same bare alert name (or metric) can never be told apart: a load error."""
    problems: list[Problem] = []
    owner: dict[tuple[str, str], tuple[str, PathKey]] = {}
    for index, cls in enumerate(doc.classes):
        for j, m in enumerate(cls.match):
            for key in _unconditional_keys(m):
                first = owner.get(key)
                if first is None:
                    owner[key] = (cls.id, ("classes", index, "match", j))
                elif first[0] != cls.id:
                    problems.append(Problem(("classes", index, "match", j),
                                            f"{key[0]} {key[1]!r} is claimed by class {first[0]!r} too "
                                            f"({format_path(first[1])}); add labels to tell them apart"))
    return problems


def _check_template(template: str, variables: Iterable[str], path: PathKey, *, promql: bool) -> list[Problem]:
    try:
        placeholders = parse_template(template)
        if promql:
            check_promql_placement(template)
    except PolicyError as exc:
        return [Problem(path, exc.message)]
    known = set(variables)
    return [
        Problem(path, f"unknown variable ${{{ph.var}}}; declared: {', '.join(sorted(known))}")
        for ph in placeholders
        if ph.var not in known
    ]


def _check_name_vars(template: str, variables: dict[str, VarSpec], path: PathKey) -> list[Problem]:
    """Non-PromQL queries are not escaped, so only name-like variables may appear in them."""
    try:
        placeholders = parse_template(template)
    except PolicyError:
        return []  # already reported by _check_template
    return [
        Problem(path, f"${{{ph.var}}} has format {variables[ph.var].format}; only name formats may be used here")
        for ph in placeholders
        if ph.var in variables and variables[ph.var].format not in _NAME_FORMATS
    ]


def _expression(source: str, allowed: Iterable[str], path: PathKey, problems: list[Problem]) -> Expression | None:
    try:
        return compile_expression(source, allowed)
    except PolicyError as exc:
        problems.append(Problem(path, exc.message))
        return None


def _compile_class(
    cls: ClassPolicy, variables: dict[str, VarSpec], path: PathKey
) -> tuple[CompiledClass | None, list[Problem]]:
    problems = _check_vars(cls.vars, (*path, "vars"))
    matchers = [_compile_matcher(m, (*path, "match", i), problems) for i, m in enumerate(cls.match)]

    evidence_ids: set[str] = set()
    for i, step in enumerate(cls.evidence):
        step_path = (*path, "evidence", i)
        if step.id in evidence_ids:
            problems.append(Problem((*step_path, "id"), f"duplicate evidence id {step.id!r}"))
        evidence_ids.add(step.id)
        form = EVIDENCE_QUERY_FORMS.get((step.tool, step.operation))
        if form is None:
            problems.append(
                Problem((*step_path, "operation"), f"unknown evidence tool/operation {step.tool}.{step.operation}")
            )
        promql = form is QueryForm.PROMQL
        # The alternatives are queries like the first: the same escaping and placement rules hold for each.
        queries = [(step.query, (*step_path, "query")),
                   *((alt, (*step_path, "alternatives", j)) for j, alt in enumerate(step.alternatives))]
        for v, variant in enumerate(step.variants):
            queries += [(variant.query, (*step_path, "variants", v, "query")),
                        *((alt, (*step_path, "variants", v, "alternatives", j))
                          for j, alt in enumerate(variant.alternatives))]
        for query, query_path in queries:
            problems += _check_template(query, variables, query_path, promql=promql)
            if form is not None and not promql:
                problems += _check_name_vars(query, variables, query_path)
            if form is QueryForm.TARGET and len(query.split()) != 1:
                problems.append(Problem(query_path, f"a {step.tool}.{step.operation} query is one target "
                                        "(a configured name, host:port or one ${var}), without spaces"))

    thresholds: dict[str, Expression] = {}
    for i, th in enumerate(cls.thresholds):
        th_path = (*path, "thresholds", i)
        if th.id in thresholds or th.id in evidence_ids:
            problems.append(Problem((*th_path, "id"), f"threshold id {th.id!r} is already used"))
        expr = _expression(th.expr, evidence_ids | CONTEXT_NAMES, (*th_path, "expr"), problems)
        if expr is not None:
            thresholds[th.id] = expr

    fallbacks = [i for i, d in enumerate(cls.diagnoses) if not d.when]
    if fallbacks != [len(cls.diagnoses) - 1]:
        problems.append(
            Problem(
                (*path, "diagnoses"), "exactly one diagnosis must have no 'when' (the fallback), and it must be last"
            )
        )
    for i, diag in enumerate(cls.diagnoses):
        for j, ref in enumerate(diag.when):
            if ref not in {t.id for t in cls.thresholds}:
                problems.append(Problem((*path, "diagnoses", i, "when", j), f"unknown threshold {ref!r}"))

    names: set[str] = set()
    preconditions: dict[str, list[Expression]] = {}
    patterns: dict[tuple[str, str], re.Pattern[str]] = {}
    for i, action in enumerate(cls.actions):
        a_path = (*path, "actions", i)
        if action.name in names:
            problems.append(Problem((*a_path, "name"), f"duplicate action name {action.name!r}"))
        names.add(action.name)
        problems += _check_action(cls, action, variables, a_path, patterns)
        exprs = [
            _expression(src, CONTEXT_NAMES, (*a_path, "preconditions", j), problems)
            for j, src in enumerate(action.preconditions)
        ]
        preconditions[action.name] = [e for e in exprs if e is not None]
        for j, ref in enumerate(action.not_for):
            if ref not in {d.id for d in cls.diagnoses}:
                problems.append(Problem((*a_path, "not_for", j), f"unknown diagnosis {ref!r}"))

    if problems:
        return None, problems
    return (
        CompiledClass(
            spec=cls,
            matchers=[m for m in matchers if m is not None],
            vars=variables,
            thresholds=thresholds,
            preconditions=preconditions,
            param_patterns=patterns,
        ),
        problems,
    )


def _check_action(
    cls: ClassPolicy,
    action: ActionSpec,
    variables: dict[str, VarSpec],
    path: PathKey,
    patterns: dict[tuple[str, str], re.Pattern[str]],
) -> list[Problem]:
    problems: list[Problem] = []
    key = (action.tool, action.operation)
    formats = ACTION_PARAMS.get(key)
    if formats is None:
        known = ", ".join(f"{t}.{o}" for t, o in ACTION_PARAMS)
        message = f"unknown tool/operation {action.tool}.{action.operation}; known: {known}"
        return [Problem((*path, "operation"), message)]
    missing = sorted(set(formats) - set(action.params))
    extra = sorted(set(action.params) - set(formats))
    if missing:
        problems.append(Problem((*path, "params"), f"missing parameter(s) {', '.join(missing)} for {key[0]}.{key[1]}"))
    for name in extra:
        problems.append(Problem((*path, "params", name), f"{key[0]}.{key[1]} takes no parameter {name!r}"))

    for name, spec in action.params.items():
        if name not in formats:
            continue
        p_path = (*path, "params", name)
        fmt = formats[name]
        kinds = KIND_VALUES.get(key) if name == "kind" else None
        bound = [x for x in (spec.template, spec.value) if x is not None]
        free = spec.allowed is not None or spec.pattern is not None
        if len(bound) + int(free) != 1:
            problems.append(Problem(p_path, "give exactly one of template, value, or allowed/pattern (+ default)"))
            continue
        if spec.template is not None:
            problems += _check_template(spec.template, variables, (*p_path, "template"), promql=False)
            if kinds is not None:
                problems.append(
                    Problem((*p_path, "template"), f"kind must be a constant value, one of {sorted(kinds)}")
                )
        constants = [spec.value] if spec.value is not None else list(spec.allowed or [])
        if spec.default is not None:
            constants.append(spec.default)
        for const in constants:
            if not is_valid(fmt, const) or (kinds is not None and const not in kinds):
                within = f" in {sorted(kinds)}" if kinds else ""
                problems.append(Problem(p_path, f"{const!r} is not a valid {fmt}{within}"))
        if spec.pattern is not None:
            rx = _regex(spec.pattern, (*p_path, "pattern"), problems)
            if rx is not None:
                patterns[(action.name, name)] = rx
                if spec.default is not None and not rx.fullmatch(spec.default):
                    problems.append(Problem((*p_path, "default"), f"default {spec.default!r} does not match pattern"))
        if free and spec.default is None:
            problems.append(Problem(p_path, "a free parameter (allowed/pattern) needs a default"))
        if spec.allowed is not None and spec.default is not None and spec.default not in spec.allowed:
            problems.append(Problem((*p_path, "default"), f"default {spec.default!r} is not in allowed"))

    if action.on_failure == "undo" and (action.tool, action.operation) not in UNDOABLE_OPERATIONS:
        undoable = ", ".join(f"{t}.{o}" for t, o in sorted(UNDOABLE_OPERATIONS))
        problems.append(Problem((*path, "on_failure"),
                                f"{action.tool}.{action.operation} cannot be undone automatically; "
                                f"on_failure: undo needs one of {undoable}"))
    problems += _check_risk(cls, action, path)
    return problems


def _check_risk(cls: ClassPolicy, action: ActionSpec, path: PathKey) -> list[Problem]:
    problems: list[Problem] = []
    if action.risk is Risk.HIGH and action.approval is not Approval.REQUIRED:
        problems.append(Problem((*path, "approval"), "a high-risk action must have approval: required"))
    if action.risk is Risk.HIGH and action.anonymous_approval:
        problems.append(Problem((*path, "anonymous_approval"),
                                "a high-risk action needs a named approver; remove anonymous_approval"))
    if action.risk is Risk.HIGH:
        return problems
    if (action.tool, action.operation) in RESTART_OPERATIONS:
        subject = " ".join(
            [cls.id, action.name, *(x for spec in action.params.values() for x in (spec.template, spec.value) if x)]
            + [a for m in cls.match for a in (*m.alerts, *m.alert_contains)]
        )
        if found := _ALWAYS_HIGH_RESTART.search(subject):
            problems.append(
                Problem((*path, "risk"), f"restarting {found.group(0).lower()} is always high risk; set risk: high")
            )
    if _RULE_ROLLBACK.search(f"{action.name} {action.description}"):
        problems.append(Problem((*path, "risk"), "a mass rule rollback is always high risk; set risk: high"))
    return problems
