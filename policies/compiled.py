"""A validated class policy ready to use: regexes and CEL compiled, variables merged with the defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property

from policies.expr import Expression
from policies.model import ActionSpec, ClassPolicy, Matcher, VarSpec
from schemas.records import AlertEvent


class Rank(IntEnum):
    """Matcher ranks, strongest first: a class matched at a stronger rank wins (policies.classify)."""

    NAME = 1
    EXPRESSION = 2
    LABELS = 3
    PATTERN = 4


@dataclass(frozen=True)
class MatchStrength:
    """How a matcher accepted an event; at one rank, more exact metrics, then more criteria, win."""

    rank: Rank
    exact_metrics: int
    wildcard_metrics: int
    criteria: int

    def key(self) -> tuple[int, int, int, int]:
        """Sort key, smallest = strongest."""
        return (int(self.rank), -self.exact_metrics, -self.wildcard_metrics, -self.criteria)


@dataclass(frozen=True)
class CompiledMatcher:
    spec: Matcher
    alerts: frozenset[str]
    contains: tuple[str, ...]
    alert_regex: re.Pattern[str] | None
    labels: dict[str, re.Pattern[str]]
    labels_any: dict[str, re.Pattern[str]]
    name_patterns: tuple[re.Pattern[str], ...] = ()
    expr_exact: frozenset[str] = frozenset()
    expr_wildcards: tuple[re.Pattern[str], ...] = ()
    annotations: dict[str, re.Pattern[str]] = field(default_factory=dict)

    @cached_property
    def needs_metrics(self) -> bool:
        """Whether matching reads the alert's expression (so the caller tokenises it only when needed)."""
        return bool(self.expr_exact or self.expr_wildcards)

    @cached_property
    def rank(self) -> Rank:
        if self.alerts:
            return Rank.NAME
        if self.expr_exact or self.expr_wildcards:
            return Rank.EXPRESSION
        if self.labels or self.labels_any or self.annotations:
            return Rank.LABELS
        return Rank.PATTERN

    def matches(self, event: AlertEvent, metrics: frozenset[str] = frozenset()) -> bool:
        return self.strength(event, metrics) is not None

    def strength(self, event: AlertEvent, metrics: frozenset[str]) -> MatchStrength | None:
        """None unless every criterion holds; ``metrics``: the names the alert's expression reads."""
        criteria = 0
        if self.alerts or self.contains or self.alert_regex is not None or self.name_patterns:
            name = event.alert.casefold() if self.spec.case_insensitive else event.alert
            by_name = (
                name in self.alerts
                or any(part in name for part in self.contains)
                or (self.alert_regex is not None and self.alert_regex.fullmatch(event.alert) is not None)
                or any(rx.search(event.alert) for rx in self.name_patterns)
            )
            if not by_name:
                return None
            criteria += 1
        exact = wildcard = 0
        if self.expr_exact or self.expr_wildcards:
            exact = len(metrics & self.expr_exact)
            wildcard = sum(1 for m in metrics - self.expr_exact if any(rx.fullmatch(m) for rx in self.expr_wildcards))
            if not exact and not wildcard:
                return None
            criteria += 1
        if not all(rx.fullmatch(event.labels.get(key, "")) for key, rx in self.labels.items()):
            return None
        if self.labels_any and not any(
            rx.fullmatch(event.labels.get(key, "")) for key, rx in self.labels_any.items() if key in event.labels
        ):
            return None
        if not all(rx.search(event.annotations.get(key, "")) for key, rx in self.annotations.items()):
            return None
        criteria += len(self.labels) + len(self.annotations) + (1 if self.labels_any else 0)
        return MatchStrength(self.rank, exact, wildcard, criteria)


@dataclass(frozen=True)
class CompiledClass:
    """One alert class; guarantees every reference in it resolved and every expression compiled."""

    spec: ClassPolicy
    matchers: list[CompiledMatcher]
    vars: dict[str, VarSpec]
    thresholds: dict[str, Expression]
    preconditions: dict[str, list[Expression]] = field(default_factory=dict)
    param_patterns: dict[tuple[str, str], re.Pattern[str]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.id

    def action(self, name: str) -> ActionSpec | None:
        return next((a for a in self.spec.actions if a.name == name), None)

    def matches(self, event: AlertEvent, metrics: frozenset[str] = frozenset()) -> bool:
        return any(m.matches(event, metrics) for m in self.matchers)

    def strength(self, event: AlertEvent, metrics: frozenset[str]) -> MatchStrength | None:
        """The strongest way one of its matchers accepts ``event``, or None."""
        found = [s for m in self.matchers if (s := m.strength(event, metrics)) is not None]
        return min(found, key=MatchStrength.key) if found else None
