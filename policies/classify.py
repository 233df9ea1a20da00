"""Which class an alert belongs to: every matcher of every class is tried, the strongest match wins.

Precedence (docs/policies.md#match-rules): an exact alert name beats the alert's expression, which
beats its labels/annotations, which beat name patterns. At one rank, more exactly-named metrics,
then more wildcard metrics, then more criteria win. Two classes still tied are *ambiguous*: the alert
stays unclassified with the reason, rather than going to whichever class the file lists first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from policies.alert_expression import alert_metric_names
from policies.checks import UNCLASSIFIED
from policies.compiled import CompiledClass, MatchStrength, Rank
from schemas.records import AlertEvent

logger = logging.getLogger(__name__)

#: A histogram is selected through these series; an ``expr_metrics`` entry names the histogram.
_HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Classification:
    """The class of an alert and why: the rank it matched at, or the classes it could not choose between."""

    alert_class: str
    rank: Rank | None = None
    ambiguous: tuple[str, ...] = ()
    metrics: frozenset[str] = frozenset()

    @property
    def reason(self) -> str:
        rank = self.rank.name.lower() if self.rank is not None else "none"
        if self.ambiguous:
            return f"ambiguous: classes {', '.join(self.ambiguous)} match equally strongly (by {rank})"
        if self.rank is None:
            return "no class matches"
        return f"matched by {rank}"


def expression_metrics(event: AlertEvent) -> frozenset[str]:
    """Metric names of the alert's own expression, histograms also under their base name."""
    names = set(alert_metric_names(event.annotations))
    for name in list(names):
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                names.add(name[: -len(suffix)])
    return frozenset(names)


def classify_event(classes: Iterable[CompiledClass], event: AlertEvent) -> Classification:
    """The class whose strongest match beats every other class's; unclassified when none or a tie.

    Ranks are tried strongest first and the first rank with any match decides, so an alert matched by
    its exact name never has its expression tokenised.
    """
    ordered = list(classes)
    metrics: frozenset[str] | None = None
    for rank in Rank:
        scored: list[tuple[MatchStrength, str]] = []
        for cls in ordered:
            found: list[MatchStrength] = []
            for matcher in cls.matchers:
                if matcher.rank is not rank:
                    continue
                if matcher.needs_metrics and metrics is None:
                    metrics = expression_metrics(event)
                strength = matcher.strength(event, metrics or frozenset())
                if strength is not None:
                    found.append(strength)
            if found:
                scored.append((min(found, key=MatchStrength.key), cls.id))
        if scored:
            return _decide(scored, event, metrics or frozenset())
    return Classification(UNCLASSIFIED, metrics=metrics or frozenset())


def _decide(scored: list[tuple[MatchStrength, str]], event: AlertEvent, metrics: frozenset[str]) -> Classification:
    best = min(strength.key() for strength, _ in scored)
    winners = [(strength, class_id) for strength, class_id in scored if strength.key() == best]
    rank = winners[0][0].rank
    if len(winners) > 1:
        tied = tuple(class_id for _, class_id in winners)
        logger.warning(
            "alert %r is ambiguous between classes %s at rank %s; left unclassified",
            event.alert[:80], ", ".join(tied), rank.name.lower(),
            extra={"event_id": event.event_id, "tenant": event.tenant},
        )
        return Classification(UNCLASSIFIED, rank, tied, metrics)
    return Classification(winners[0][1], rank, metrics=metrics)
