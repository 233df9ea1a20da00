"""Evidence steps with alternative metric names, against a real Prometheus (issue 19).

A step's queries are tried in order while one finds no series; the record is the answering query's and
says which one answered.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx

from executors.evidence import EvidenceReport, EvidenceRunner, PlannedStep, build_evidence_tools
from executors.evidence.prom import PromApi
from policies import load_policies
from policies.triage import alternative_queries
from schemas.records import EvidenceStatus
from tests.integration.evidence.conftest import RunningPrometheus
from tests.integration.evidence.exporter import HIGHEST_TS
from tests.integration.evidence.test_prom_evidence import incident

#: The name vmalert ≥ 1.80 exposes; nothing serves it here, as on a 1.79 installation.
MISSING = 'sum(increase(vmalert_recording_rules_errors_total{namespace="insight-system"}[5m]))'
PRESENT = 'max(prometheus_remote_storage_highest_timestamp_in_seconds{namespace="insight-system"})'
ALSO_MISSING = 'sum(max_over_time(vmalert_recording_rules_error{namespace="insight-system"}[5m]))'


def gather(prom: RunningPrometheus, steps: list[PlannedStep]) -> EvidenceReport:
    async def go() -> EvidenceReport:
        async with httpx.AsyncClient(timeout=10) as client:
            tools = build_evidence_tools(prom=PromApi.create(client, prom.url))
            return await EvidenceRunner(tools).run(steps, now=datetime.now(UTC))
    return asyncio.run(go())


def test_the_first_query_with_series_answers_and_the_record_says_which(prometheus: RunningPrometheus) -> None:
    report = gather(prometheus, [
        PlannedStep("renamed", "prom", "query", MISSING, alternatives=(ALSO_MISSING, PRESENT)),
        PlannedStep("first", "prom", "query", PRESENT, alternatives=(MISSING,)),
        PlannedStep("nowhere", "prom", "query", MISSING, alternatives=(ALSO_MISSING,)),
    ])
    renamed, first, nowhere = report.evidence
    # The record's query is the request that answered (method, URL and form, so it can be rerun).
    assert renamed.status is EvidenceStatus.SUCCESS and json.dumps(PRESENT) in renamed.query
    assert "vmalert" not in renamed.query
    assert "answered by alternative 2 of 2" in renamed.summary and MISSING in renamed.summary
    assert report.values["renamed"] == HIGHEST_TS
    assert json.dumps(PRESENT) in first.query and "answered by its first query" in first.summary
    assert report.values["first"] == HIGHEST_TS
    assert nowhere.status is EvidenceStatus.NO_DATA and "nowhere" not in report.values
    assert "none of its 2 queries found series" in nowhere.summary and ALSO_MISSING in nowhere.summary


def test_the_policy_renders_the_vmalert_179_names_as_alternatives() -> None:
    policies = load_policies()
    inc = incident(policies, "RecordingRulesError", {"namespace": "insight-system", "pod": "vmalert-0"})
    rendered = alternative_queries(inc, policies)
    assert rendered["recording_errors"] == (
        'sum(max_over_time(vmalert_recording_rules_error{namespace="insight-system"}[5m]))',)
    assert "vmalert_alerting_rules_error{" in rendered["alerting_errors"][0]
