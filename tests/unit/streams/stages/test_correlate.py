"""The correlate stage: one incident record out per record in, with its group; the labelled corpus through the real
parsers, dedup and correlation (every channel folds into one incident per alert; nothing merged or lost)."""

from __future__ import annotations

import json

from benchmarks.correlation_bench import run, score, storm_only
from benchmarks.correlation_corpus import FIXTURE, dump, generate
from policies import load_policies, parse_policies
from policies.loader import DEFAULT_POLICY_FILE
from schemas.records import Incident, IncidentState
from schemas.topics import INCIDENTS
from streams.stages.correlate import Correlate
from tests.unit.policies.test_correlation import incident


def test_each_record_leaves_once_keyed_as_dedup_keyed_it_with_its_group() -> None:
    stage = Correlate(load_policies())
    first = stage(incident(1, "prometheus_remote_write_behind"), None)
    second = stage(incident(2, "vminsert_write_errors", minutes=1), first.state)
    for result, n in ((first, 1), (second, 2)):
        [out] = result.outputs
        assert out.spec is INCIDENTS and out.key == f"acme:fp-{n}"
        assert isinstance(out.record, Incident) and out.record.incident_id == f"inc-{n}"
    [out] = second.outputs
    assert isinstance(out.record, Incident)
    assert (out.record.group_id, out.record.root_candidate) == ("inc-1", "inc-2")
    assert out.record.group_reason is not None and out.record.group_reason.startswith("causal chain remote-write")
    assert stage.route_key(incident(3, "x")) == "acme:c1"


def test_an_unreadable_row_costs_no_incident() -> None:
    [out] = Correlate(load_policies())(incident(1, "log_flood"), {"groups": "garbage"}).outputs
    assert isinstance(out.record, Incident) and out.record.group_id == "inc-1"


def test_without_correlation_rules_records_pass_unchanged() -> None:
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8").split("\ncorrelation:")[0]
    stage = Correlate(parse_policies(text))
    record = incident(1, "log_flood")
    [out] = stage(record, None).outputs
    assert out.record == record and stage.route_key(record) == "acme:~inc-1"


def test_the_fixture_is_the_generators_output() -> None:
    assert json.loads(FIXTURE.read_text(encoding="utf-8")) == json.loads(json.dumps(dump(generate())))


def test_the_labelled_corpus_groups_without_merging_distinct_problems() -> None:
    corpus = generate(seed=5, storms=4, nodes=3, rules=2, singles=5)
    records, events = run(corpus)
    result = score(corpus, records, events)
    assert result["merged_away"] == 0 and result["lost"] == 0
    assert result["precision"] == 1.0 and result["f1"] >= 0.93
    # Webhook, default mail, digest, /events and Alertmanager's repeats of one alert: one incident, and the
    # resolved notification (on any of the channels) resolves it.
    assert result["incidents"] == len(corpus.alerts)
    last = {r.incident_id: r for r in records}
    assert all(r.state is IncidentState.RESOLVED for r in last.values())
    storms = storm_only(corpus)
    storm = score(storms, *run(storms))
    assert storm["compression_events_to_groups"] >= 0.95 and storm["groups"] == storm["problems"] == 4
