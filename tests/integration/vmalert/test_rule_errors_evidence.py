"""The rule-evaluation class's evidence against a real vmalert whose rules fail, scraped by a real VictoriaMetrics.

vmalert 1.79 (Debian's) exposes the per-rule gauges ``vmalert_recording_rules_error`` and
``vmalert_alerting_rules_error``, not the ``vmalert_*_rules_errors_total`` counters later versions have. The
policy lists the gauges as alternatives: the evidence must come from whichever name this vmalert has, say
which one answered, and the threshold must see the failing rules (issue 19).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from executors.evidence import EvidenceReport, EvidenceRunner, build_evidence_tools, plan_from_triage
from executors.evidence.prom import PromApi
from policies import choose_diagnosis, evaluate_thresholds, load_policies, triage
from policies.triage import alternative_queries
from schemas.records import AlertEvent, AlertMetrics, EvidenceStatus, Incident
from tests.integration.vmalert.conftest import (
    GOOD_RULES,
    RunningRuler,
    _answers,
    _binary,
    _free_port,
    _stop,
    _wait_ready,
)

#: Both rules fail on every evaluation: two series end up with one labelset once the rule's labels apply.
FAILING = GOOD_RULES + """\
  - name: rcaflow-failing
    interval: 1s
    rules:
      - record: rcaflow:dup
        expr: label_set(time(), "a", "1") or label_set(time(), "a", "2")
        labels: {a: same}
      - alert: RcaflowDup
        expr: label_set(time(), "a", "1") or label_set(time(), "a", "2")
        labels: {a: same}
"""


@pytest.fixture
def scraper(vmalert: RunningRuler, tmp_path: Path) -> Iterator[str]:
    """A VictoriaMetrics of its own that scrapes the vmalert every second, labelling it as the alert's pod would be."""
    binary = _binary("victoria-metrics")
    host_port = vmalert.url.removeprefix("http://")
    config = tmp_path / "scrape.yml"
    config.write_text(f"""\
scrape_configs:
  - job_name: vmalert
    scrape_interval: 1s
    static_configs:
      - targets: ["{host_port}"]
        labels: {{namespace: insight-system, pod: vmalert-insight-0}}
""")
    port = _free_port()
    log = tmp_path / "scraper.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"-storageDataPath={tmp_path / 'scraper-data'}", f"-httpListenAddr=127.0.0.1:{port}",
             f"-promscrape.config={config}", "-retentionPeriod=1d", "-loggerLevel=WARN",
             "-search.latencyOffset=0s"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready("victoria-metrics (scraper)", lambda: _answers(f"{url}/health"), proc, log)
        yield url
    finally:
        _stop(proc)


def _has(url: str, query: str) -> bool:
    answer = httpx.post(f"{url}/api/v1/query", data={"query": query}, timeout=5).json()
    return bool(answer.get("data", {}).get("result"))


def test_failing_rules_are_measured_under_the_names_this_vmalert_has(vmalert: RunningRuler, scraper: str) -> None:
    vmalert.write_rules(FAILING)
    assert httpx.post(f"{vmalert.url}/-/reload", timeout=5).status_code == 200
    probe = 'max(vmalert_recording_rules_error{namespace="insight-system"}) > 0'
    deadline = time.monotonic() + 60
    while not _has(scraper, probe):
        if time.monotonic() > deadline:
            pytest.fail(f"no failing rule scraped from vmalert in 60s:\n{vmalert.log.read_text()[-3000:]}")
        time.sleep(0.5)
    assert not _has(scraper, "vmalert_recording_rules_errors_total"), "this vmalert has the new names: update the test"

    policies = load_policies()
    now = datetime.now(UTC)
    event = AlertEvent(tenant="acme", event_id="e1", fingerprint="f1", alert="RecordingRulesError", severity="warning",
                       labels={"namespace": "insight-system", "pod": "vmalert-insight-0"},
                       metrics=AlertMetrics(times=1), received_at=now, parser="test")
    event = event.model_copy(update={"alert_class": policies.classify(event)})
    assert event.alert_class == "rule_evaluation_failures"
    inc = Incident(tenant="acme", incident_id="inc-1", fingerprint="f1", alert_class=event.alert_class,
                   opened_at=now, last_seen_at=now, last_event_id="e1", event=event)
    cls = policies.get(inc.alert_class)
    assert cls is not None
    plan = plan_from_triage([s.id for s in cls.spec.evidence], triage(inc, policies, now).evidence,
                            alternative_queries(inc, policies))

    async def go() -> EvidenceReport:
        async with httpx.AsyncClient(timeout=10) as client:
            tools = build_evidence_tools(prom=PromApi.create(client, scraper))
            return await EvidenceRunner(tools).run(plan, now=datetime.now(UTC))

    report = asyncio.run(go())
    by_id = dict(zip([s.id for s in cls.spec.evidence], report.evidence, strict=True))
    for step in ("recording_errors", "alerting_errors"):
        entry = by_id[step]
        assert entry.status is EvidenceStatus.SUCCESS, entry
        assert "answered by alternative 1 of 1" in entry.summary, entry.summary
        assert "_rules_error{" in entry.query and "errors_total" not in entry.query
        assert report.values[step] >= 1.0
    assert by_id["prom_failures"].status is EvidenceStatus.NO_DATA  # no Prometheus ruler here: unknown
    outcomes = evaluate_thresholds(cls, report.values)
    assert outcomes["evaluation_errors"] is True  # true OR true OR unknown
    assert choose_diagnosis(cls, report.values).id != cls.spec.diagnoses[-1].id  # not the fallback

