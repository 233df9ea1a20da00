"""A step's alternative queries are held to the tenant's scope like its first query (issue 19).

A first query inside the scope that finds nothing must not open the way to an alternative that reads
another tenant's namespace.
"""

from __future__ import annotations

from executors.evidence import PlannedStep
from executors.evidence.runner import ReadTarget
from schemas.records import EvidenceStatus
from tests.unit.executors.evidence.test_evidence_scope import ACME, gather

WINDOW = "@timestamp:[now-5m TO now]"


def _filter(namespace: str, pod: str) -> str:
    return f'kubernetes.namespace_name:"{namespace}" AND kubernetes.pod_name:"{pod}" AND {WINDOW}'


def test_an_alternative_outside_the_scope_stops_the_step_before_anything_is_sent() -> None:
    sneaky = PlannedStep("volume", "es", "count", _filter("team-a-web", "quiet-0"),
                         alternatives=(_filter("team-b", "noisy-0"),))
    report, _ = gather([sneaky], ReadTarget(ACME, cluster=None, namespace="team-a-web"))
    entry = report.evidence[0]
    assert entry.status is EvidenceStatus.SKIPPED, entry
    assert "outside tenant scope" in entry.summary and "team-b secret" not in entry.summary
    assert "volume" not in report.values


def test_an_alternative_inside_the_scope_answers_when_the_first_query_finds_nothing() -> None:
    step = PlannedStep("volume", "es", "count", _filter("team-a-web", "quiet-0"),
                       alternatives=(_filter("team-a-web", "noisy-0"),))
    report, _ = gather([step], ReadTarget(ACME, cluster=None, namespace="team-a-web"))
    entry = report.evidence[0]
    assert entry.status is EvidenceStatus.SUCCESS, entry
    assert "answered by alternative 1 of 1" in entry.summary
    assert report.values["volume"] == 5.0
