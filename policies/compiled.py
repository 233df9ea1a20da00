"""A validated class policy ready to use: regexes and CEL compiled, variables merged with the defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from policies.expr import Expression
from policies.model import ActionSpec, ClassPolicy, Matcher, VarSpec
from schemas.records import AlertEvent


@dataclass(frozen=True)
class CompiledMatcher:
    spec: Matcher
    alerts: frozenset[str]
    contains: tuple[str, ...]
    alert_regex: re.Pattern[str] | None
    labels: dict[str, re.Pattern[str]]
    labels_any: dict[str, re.Pattern[str]]

    def matches(self, event: AlertEvent) -> bool:
        name = event.alert.casefold() if self.spec.case_insensitive else event.alert
        by_name = (
            name in self.alerts
            or any(part in name for part in self.contains)
            or (self.alert_regex is not None and self.alert_regex.fullmatch(event.alert) is not None)
        )
        if not by_name:
            return False
        if not all(rx.fullmatch(event.labels.get(key, "")) for key, rx in self.labels.items()):
            return False
        return not self.labels_any or any(
            rx.fullmatch(event.labels.get(key, "")) for key, rx in self.labels_any.items() if key in event.labels
        )


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

    def matches(self, event: AlertEvent) -> bool:
        return any(m.matches(event) for m in self.matchers)
