"""CEL expressions for thresholds and preconditions: compiled and checked once at load, evaluated purely.

CEL (cel-python) instead of ``eval``: it cannot reach Python objects, loops or I/O, so a policy
file is data even when someone edits it carelessly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import celpy
import lark
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from policies.errors import ExpressionError

logger = logging.getLogger(__name__)

_ENV: Final = celpy.Environment()
_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_FUNCTIONS: Final = frozenset(
    {"has", "size", "int", "uint", "double", "string", "bool", "duration", "timestamp", "type", "dyn"}
)
#: Answers kept per process (expression and values): a few thousand distinct evidence readings.
EVALUATIONS_KEPT: Final = 8192
_METHODS: Final = _MACROS | frozenset({"contains", "startsWith", "endsWith", "matches", "size"})


@dataclass(frozen=True)
class Expression:
    """A compiled CEL expression and the free variables it reads."""

    source: str
    names: frozenset[str]
    _program: Any

    def evaluate(self, variables: Mapping[str, Any]) -> bool | None:
        """True/False, or None for *unknown*, in strong Kleene logic (docs/policies.md, "Missing evidence").

        A name missing from ``variables`` (an evidence series that did not answer) is unknown, and so is
        every comparison or arithmetic that reads it. CEL's commutative ``||`` and ``&&`` absorb an unknown
        operand when the other one decides: ``true || unknown`` is true, ``false && unknown`` is false;
        ``!unknown``, ``unknown ? a : b`` and a comparison with an unknown operand stay unknown. So the
        missing names are left out of the activation (never replaced by a made-up value) and CEL decides;
        a missing series must not hide a series that is there.
        """
        present = sorted(name for name in self.names if name in variables)
        key = tuple((name, _tagged(variables[name])) for name in present)
        if any(tagged is None for _, tagged in key):  # a value with no hashable form: evaluated every time
            return self._evaluate({name: variables[name] for name in present})
        return _evaluate_once(self, key)

    def _evaluate(self, values: Mapping[str, Any]) -> bool | None:
        activation = {name: json_to_cel(value) for name, value in values.items()}
        try:
            result = self._program.evaluate(activation)
        except CELEvalError as exc:
            logger.debug("CEL %r failed: %s", self.source, exc.args[0] if exc.args else exc)
            return None
        if isinstance(result, CELEvalError):
            return None
        if not isinstance(result, celtypes.BoolType):
            return None
        return bool(result)


@functools.lru_cache(maxsize=EVALUATIONS_KEPT)
def _evaluate_once(expr: Expression, key: tuple[Any, ...]) -> bool | None:
    """One expression's answer for one set of values: CEL is pure, and interpreting it again costs the most.

    Alerts repeat: the same thresholds meet the same evidence values over and over, and cel-python
    walks the parse tree on every evaluation (a tenth of a worker's CPU under a backlog, measured).
    """
    return expr._evaluate({name: _thawed(value) for name, value in key})


def _tagged(value: Any) -> Any:
    """A hashable copy of a JSON-like value that keeps its types apart (1, 1.0 and True are three values in CEL).

    None when some part of it has no hashable form.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if isinstance(value, Mapping):
        items = [(str(k), _tagged(v)) for k, v in value.items()]
        return None if any(v is None for _, v in items) else ("map", tuple(sorted(items)))
    if isinstance(value, (list, tuple)):
        parts = [_tagged(v) for v in value]
        return None if any(p is None for p in parts) else ("list", tuple(parts))
    return None


def _thawed(tagged: Any) -> Any:
    kind, value = tagged
    if kind == "map":
        return {k: _thawed(v) for k, v in value}
    if kind == "list":
        return [_thawed(v) for v in value]
    return value


def compile_expression(source: str, allowed: Iterable[str]) -> Expression:
    """Compile ``source`` and check that it only reads ``allowed`` names; raise ExpressionError otherwise."""
    try:
        ast = _ENV.compile(source)
    except CELParseError as exc:
        lines = str(exc).splitlines()
        column = lines[1].find("^") + 1 if len(lines) > 1 else 0
        where = f" at column {column}" if column > 0 else ""
        raise ExpressionError(f"CEL syntax error in {source!r}{where}") from exc
    unknown_calls = sorted(_calls(ast) - _FUNCTIONS - _METHODS)
    if unknown_calls:
        raise ExpressionError(f"CEL expression {source!r} calls unknown function(s) {', '.join(unknown_calls)}")
    names = _free_names(ast)
    unknown = sorted(names - set(allowed))
    if unknown:
        raise ExpressionError(
            f"CEL expression {source!r} reads unknown name(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed)) or '(none)'}"
        )
    try:
        program = _ENV.program(ast)
    except CELEvalError as exc:
        raise ExpressionError(f"CEL expression {source!r} cannot be prepared: {exc}") from exc
    return Expression(source=source, names=frozenset(names), _program=program)


def _calls(ast: lark.Tree[Any]) -> set[str]:
    calls: set[str] = set()
    for tree in ast.iter_subtrees():
        if tree.data == "ident_arg" and tree.children:
            calls.add(str(tree.children[0]))
        elif tree.data == "member_dot_arg" and len(tree.children) >= 2:
            calls.add(str(tree.children[1]))
    return calls


def _free_names(ast: lark.Tree[Any]) -> set[str]:
    names: set[str] = set()
    bound: set[str] = set()
    for tree in ast.iter_subtrees():
        if tree.data == "ident" and tree.children:
            names.add(str(tree.children[0]))
        elif tree.data == "member_dot_arg" and len(tree.children) >= 3:
            method = str(tree.children[1])
            args = tree.children[2]
            if method in _MACROS and isinstance(args, lark.Tree) and args.children:
                first = args.children[0]
                if isinstance(first, lark.Tree):
                    bound.update(str(t.children[0]) for t in first.iter_subtrees() if t.data == "ident")
    return names - bound
