"""What a policy may name comes from the one operation catalogue; the new evidence steps follow the same rules."""

from __future__ import annotations

import textwrap

import pytest

from policies import PolicyFileError, parse_policies, triage
from policies.catalog import (
    ACTION_PARAMS,
    EVIDENCE_OPERATIONS,
    EVIDENCE_QUERY_FORMS,
    KIND_VALUES,
    RESTART_OPERATIONS,
    UNDOABLE_OPERATIONS,
)
from policies.validate import FORMATS
from schemas.operations import ACTIONS, EVIDENCE, QueryForm, by_family
from schemas.records import AlertEvent, EvidenceStatus, Incident
from tests.unit.policies.policy_samples import NOW

PROBES = textwrap.dedent(
    """\
    version: 1
    defaults:
      dedup_window: 30m
      approval_ttl: 1h
    classes:
      - id: unreachable
        title: Unreachable
        runbooks: [https://example.test/runbook]
        match:
          - alerts: [TargetDown]
        vars:
          namespace: {from: [labels.namespace], format: dns1123_label}
          pod: {from: [labels.pod], format: dns1123_subdomain}
          instance: {from: [labels.instance], format: instance}
          text: {from: [annotations.description], format: safe_text}
        evidence:
          - {id: owners, tool: k8s, operation: owners, query: 'namespace=${namespace} pod=${pod}'}
          - {id: port_open, tool: netprobe, operation: tcp, query: '${instance}'}
          - {id: resolves, tool: netprobe, operation: dns, query: 'vminsert'}
          - {id: health, tool: netprobe, operation: http, query: 'target=vmselect'}
        thresholds:
          - {id: closed, expr: 'port_open < 1.0'}
        diagnoses:
          - {id: down, when: [closed], diagnosis: Nothing listens, confidence: 0.8}
          - {id: fallback, diagnosis: Unknown, confidence: 0.3}
    """
)


def _errors(text: str) -> list[str]:
    with pytest.raises(PolicyFileError) as info:
        parse_policies(text, file="p.yaml")
    return [str(e) for e in info.value.errors]


def test_policy_tables_are_the_catalogue() -> None:
    nameable = [op for op in ACTIONS if not op.inverse_only]
    assert {op.key: {n: p.format for n, p in op.params.items()} for op in nameable} == ACTION_PARAMS
    assert {family: frozenset(ops) for family, ops in by_family(EVIDENCE).items()} == EVIDENCE_OPERATIONS
    assert {op.key: op.query for op in EVIDENCE} == EVIDENCE_QUERY_FORMS
    kinds = {("k8s", "rollout_restart"): {"deployment", "statefulset", "daemonset"},
             ("k8s", "scale"): {"deployment", "statefulset"}}
    assert kinds == KIND_VALUES
    # Safety rules hang on these two: the etcd/Prometheus restart floor and automatic undo.
    assert {("k8s", "rollout_restart"), ("k8s", "delete_pod")} == RESTART_OPERATIONS
    assert {("k8s", "rollout_restart"), ("k8s", "scale")} == UNDOABLE_OPERATIONS


def test_every_action_parameter_a_policy_binds_has_a_known_format() -> None:
    """An unknown format name would make every value invalid: the action could never be proposed."""
    for key, formats in ACTION_PARAMS.items():
        for name, fmt in formats.items():
            assert fmt in FORMATS, f"{key[0]}.{key[1]} {name}: {fmt!r} is not in policies.validate.FORMATS"


def test_owners_and_netprobe_steps_load() -> None:
    cls = parse_policies(PROBES).get("unreachable")
    assert cls is not None
    assert [f"{s.tool}.{s.operation}" for s in cls.spec.evidence] == [
        "k8s.owners", "netprobe.tcp", "netprobe.dns", "netprobe.http"]


def test_an_inverse_is_not_an_action_a_policy_may_name() -> None:
    text = PROBES.replace(
        "    thresholds:\n",
        "    actions:\n"
        "      - name: unsilence\n"
        "        tool: alertmanager\n"
        "        operation: expire_silence\n"
        "        params: {silence_id: {value: 0b3c7a52-0d5e-4c1e-9a57-6f0c7d1b9e11}}\n"
        "        risk: low\n"
        "        approval: auto\n"
        "    thresholds:\n",
    )
    assert any("unknown tool/operation alertmanager.expire_silence" in e for e in _errors(text))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("'${instance} extra'", "netprobe.tcp query is one target"),
        ("'${text}'", "${text} has format safe_text; only name formats may be used here"),
        ("'${missing}'", "unknown variable ${missing}"),
    ],
)
def test_a_netprobe_step_is_one_name_like_target(query: str, expected: str) -> None:
    errors = _errors(PROBES.replace("query: '${instance}'", f"query: {query}"))
    assert len(errors) == 1 and expected in errors[0] and "evidence[1].query" in errors[0]


def test_an_owners_step_takes_only_name_like_variables() -> None:
    errors = _errors(PROBES.replace("pod=${pod}'", "pod=${text}'"))
    assert len(errors) == 1 and "${text} has format safe_text" in errors[0]


def _incident(labels: dict[str, str]) -> Incident:
    event = AlertEvent(tenant="acme", event_id="e1", fingerprint="f1", alert="TargetDown", severity="warning",
                       alert_class="unreachable", labels=labels, received_at=NOW, parser="test")
    return Incident(tenant="acme", incident_id="i1", fingerprint="f1", alert_class="unreachable",
                    opened_at=NOW, last_seen_at=NOW, last_event_id="e1", event=event)


def test_triage_renders_the_new_steps_and_never_puts_a_hostile_label_in_a_probe() -> None:
    policies = parse_policies(PROBES)
    planned = triage(_incident({"namespace": "insight-system", "pod": "vminsert-0", "instance": "10.0.0.7:8480"}),
                     policies, NOW).evidence
    assert [e.query for e in planned] == [
        "namespace=insight-system pod=vminsert-0", "10.0.0.7:8480", "vminsert", "target=vmselect"]
    assert all(e.status is EvidenceStatus.SKIPPED for e in planned)
    assert EVIDENCE_QUERY_FORMS[("netprobe", "tcp")] is QueryForm.TARGET

    hostile = triage(_incident({"namespace": "insight-system", "pod": "vminsert-0",
                                "instance": "evil.test:22 target=x"}), policies, NOW).evidence
    assert hostile[1].status is EvidenceStatus.ERROR and "evil" not in hostile[1].query
