"""Thresholds are strong Kleene logic: a missing series is *unknown*, and unknown never hides what is known.

The truth table below is written out by hand; a small reference evaluator applies it to every threshold
of the shipped policy file, with each series dropped in turn, and the CEL engine must agree with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import lark
import pytest
from celpy import Environment

from policies import PolicySet, choose_diagnosis, evaluate_thresholds, load_policies
from policies.expr import compile_expression

#: None is *unknown*. Strong Kleene logic (docs/policies.md, "Missing evidence").
T, F, U = True, False, None
OR: dict[tuple[bool | None, bool | None], bool | None] = {
    (T, T): T, (T, F): T, (T, U): T,
    (F, T): T, (F, F): F, (F, U): U,
    (U, T): T, (U, F): U, (U, U): U,
}
AND: dict[tuple[bool | None, bool | None], bool | None] = {
    (T, T): T, (T, F): F, (T, U): U,
    (F, T): F, (F, F): F, (F, U): F,
    (U, T): U, (U, F): F, (U, U): U,
}
NOT: dict[bool | None, bool | None] = {T: F, F: T, U: U}


@pytest.mark.parametrize(("a", "b"), list(itertools.product([T, F, U], repeat=2)))
def test_or_and_follow_the_kleene_table(a: bool | None, b: bool | None) -> None:
    expr_or = compile_expression("x > 0.0 || y > 0.0", {"x", "y"})
    expr_and = compile_expression("x > 0.0 && y > 0.0", {"x", "y"})
    variables = {name: 1.0 if value else -1.0 for name, value in (("x", a), ("y", b)) if value is not None}
    assert expr_or.evaluate(variables) is OR[(a, b)]
    assert expr_and.evaluate(variables) is AND[(a, b)]


@pytest.mark.parametrize("a", [T, F, U])
def test_not_and_conditional_keep_unknown(a: bool | None) -> None:
    variables = {} if a is None else {"x": 1.0 if a else -1.0}
    assert compile_expression("!(x > 0.0)", {"x"}).evaluate(variables) is NOT[a]
    chosen = compile_expression("x > 0.0 ? true : false", {"x"}).evaluate(variables)
    assert chosen is a


def test_a_comparison_or_arithmetic_with_a_missing_series_is_unknown() -> None:
    assert compile_expression("x > y", {"x", "y"}).evaluate({"x": 5.0}) is None
    assert compile_expression("x + y > 0.0", {"x", "y"}).evaluate({"x": 5.0}) is None
    assert compile_expression("x + y > 0.0", {"x", "y"}).evaluate({"x": 5.0, "y": 0.0}) is True


# ---------------------------------------------------------------------------------------------- the reference
_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "relation_gt": lambda a, b: a > b, "relation_ge": lambda a, b: a >= b,
    "relation_lt": lambda a, b: a < b, "relation_le": lambda a, b: a <= b,
    "relation_eq": lambda a, b: a == b, "relation_ne": lambda a, b: a != b,
}
_ARITH: dict[str, Callable[[float, float], float]] = {
    "addition_add": lambda a, b: a + b, "addition_sub": lambda a, b: a - b,
    "multiplication_mul": lambda a, b: a * b, "multiplication_div": lambda a, b: a / b,
}


class _Unknown:
    """A value that depends on a missing series."""


UNKNOWN = _Unknown()


def reference(tree: lark.Tree[Any] | lark.Token, variables: Mapping[str, float]) -> Any:
    """Evaluate the CEL subset the policy file uses, by the tables above; fails on anything else."""
    if isinstance(tree, lark.Token):
        raise AssertionError(f"unexpected token {tree!r}")
    kids = tree.children
    if tree.data in ("member", "primary", "paren_expr") or (len(kids) == 1 and tree.data in (
            "expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary")):
        return reference(kids[0], variables)
    if tree.data == "ident":
        return variables.get(str(kids[0]), UNKNOWN)
    if tree.data == "literal":
        text = str(kids[0])
        return text == "true" if text in ("true", "false") else float(text)
    if tree.data == "expr":  # c ? a : b
        cond = _truth(reference(kids[0], variables))
        return UNKNOWN if cond is None else reference(kids[1] if cond else kids[2], variables)
    if tree.data in ("conditionalor", "conditionaland"):
        table = OR if tree.data == "conditionalor" else AND
        return _value(table[(_truth(reference(kids[0], variables)), _truth(reference(kids[1], variables)))])
    if tree.data == "unary":
        op = kids[0].data if isinstance(kids[0], lark.Tree) else ""
        operand = reference(kids[1], variables)
        if op == "unary_not":
            return _value(NOT[_truth(operand)])
        if op == "unary_neg":
            return UNKNOWN if operand is UNKNOWN else -operand
    if tree.data in ("relation", "addition", "multiplication"):
        op_tree = kids[0]
        assert isinstance(op_tree, lark.Tree)
        left, right = reference(op_tree.children[0], variables), reference(kids[1], variables)
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        table: Mapping[str, Callable[[Any, Any], Any]] = _CMP if tree.data == "relation" else _ARITH
        if op_tree.data in table:
            return table[op_tree.data](left, right)
    raise AssertionError(f"the reference evaluator does not know {tree.data!r}: extend it with the new construct")


def _truth(value: Any) -> bool | None:
    if value is UNKNOWN:
        return None
    assert isinstance(value, bool), f"not a boolean: {value!r}"
    return value


def _value(truth: bool | None) -> Any:
    return UNKNOWN if truth is None else truth


_ENV = Environment()
#: Values a series may take: around every constant the shipped thresholds compare with.
_SAMPLES = (0.0, 0.5, 1.0, 3.0, 150.0, 2e5, 2e9)
_POLICIES = load_policies()
THRESHOLDS = [
    pytest.param(cls.id, th_id, expr, id=f"{cls.id}.{th_id}")
    for cls in _POLICIES.classes for th_id, expr in cls.thresholds.items()
]


@pytest.mark.parametrize(("class_id", "threshold_id", "expr"), THRESHOLDS)
def test_every_shipped_threshold_with_each_series_dropped_in_turn(class_id: str, threshold_id: str,
                                                                  expr: Any) -> None:
    tree = _ENV.compile(expr.source)
    names = sorted(expr.names)
    assert names, f"{class_id}.{threshold_id} reads no series"
    checked = 0
    for dropped in [None, *names]:
        present = [name for name in names if name != dropped]
        for values in itertools.product(_SAMPLES, repeat=len(present)):
            variables = dict(zip(present, values, strict=True))
            expected = _truth(reference(tree, variables))
            got = expr.evaluate(variables)
            assert got is expected, (f"{class_id}.{threshold_id} = {expr.source!r} over {variables} "
                                     f"(missing {dropped}): CEL says {got}, Kleene says {expected}")
            checked += 1
    # Every series at all missing: unknown, whatever the expression.
    assert expr.evaluate({}) is None
    assert checked > len(names)


def test_a_disjunction_with_one_side_true_holds_however_the_other_side_is_missing() -> None:
    """The report: remote write 1,005 failed samples/s and no receiver series must be 'the receiver rejects'."""
    cls = _POLICIES.get("prometheus_remote_write_behind")
    assert cls is not None
    evidence = {"lag_seconds": 600.0, "failed_rate": 1005.0, "shards_ratio": 1.0}
    assert evaluate_thresholds(cls, evidence)["samples_failing"] is True
    assert choose_diagnosis(cls, evidence).id == "receiver_rejects"


def test_unknown_never_makes_a_diagnosis_apply(policies: PolicySet) -> None:
    """A diagnosis needs every one of its thresholds *true*; unknown is not true."""
    cls = policies.get("prometheus_remote_write_behind")
    assert cls is not None
    assert choose_diagnosis(cls, {"failed_rate": 1005.0}).id == "behind"  # far_behind unknown → the fallback
