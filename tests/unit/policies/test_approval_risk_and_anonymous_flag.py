"""What decides who may approve: a restart of etcd or a Prometheus is high risk whatever the policy file says,
and only an action the policy marks ``anonymous_approval: true`` (never a high-risk one) takes a link naming nobody."""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from policies import PolicySet, decide, dedup, load_policies, triage
from policies.errors import PolicyFileError
from producers.fingerprint import alert_fingerprint, event_id
from schemas.records import ActionEvent, ActionState, AlertEvent, AlertMetrics, Risk
from streams.api.approvals import approvals_config
from streams.settings import ApprovalSettings
from tests.support.approval_keys import APPROVAL_KEYS
from tests.unit.policies.policy_samples import NOW

POLICY = textwrap.dedent(
    """\
    version: 1
    defaults:
      dedup_window: 30m
      approval_ttl: 1h
      vars:
        namespace: {from: [labels.namespace], format: dns1123_label}
        pod: {from: [labels.pod, labels.workload], format: dns1123_subdomain}
    classes:
      - id: demo
        title: Demo
        runbooks: [https://example.test/runbook]
        match:
          - alerts: [DemoAlert]
        diagnoses:
          - {id: fallback, diagnosis: Something, confidence: 0.4}
        actions:
          - name: restart
            tool: k8s
            operation: delete_pod
            params:
              namespace: {template: '${namespace}'}
              pod: {template: '${pod}'}
            risk: low
            approval: required
            anonymous_approval: true
    """
)


def _policies(tmp_path: Path, text: str = POLICY) -> PolicySet:
    path = tmp_path / "policies.yaml"
    path.write_text(text, encoding="utf-8")
    return load_policies(path)


def _restart_of(policies: PolicySet, pod: str, now: datetime = NOW) -> ActionEvent:
    labels = {"namespace": "monitoring", "pod": pod}
    event = AlertEvent(tenant="acme", event_id=event_id("acme", "<m@t>", 0),
                       fingerprint=alert_fingerprint("acme", "DemoAlert", labels), alert="DemoAlert",
                       severity="warning", labels=labels, metrics=AlertMetrics(times=1), received_at=now,
                       parser="test")
    event = event.model_copy(update={"alert_class": policies.classify(event)})
    incident = dedup(None, event, policies.dedup_window(event.alert_class), now).incident
    assert incident is not None
    [action] = decide(triage(incident, policies, now), policies, now).actions
    return action


@pytest.mark.parametrize("pod", ["prometheus-k8s-0", "etcd-master-1"])
def test_restarting_a_prometheus_or_etcd_pod_is_high_risk_even_if_the_policy_says_low(
    tmp_path: Path, pod: str
) -> None:
    policies = _policies(tmp_path)
    action = _restart_of(policies, pod)
    assert action.risk is Risk.HIGH and action.state is ActionState.AWAITING_APPROVAL
    # ... and so a link naming nobody cannot approve it, although the policy marks the action anonymous.
    config = approvals_config(ApprovalSettings(), policies, APPROVAL_KEYS)
    assert config.anonymous_approval(action) is False


def test_an_action_marked_anonymous_takes_an_anonymous_link(tmp_path: Path) -> None:
    policies = _policies(tmp_path)
    action = _restart_of(policies, "web-7d9f-abcde")
    assert action.risk is Risk.LOW and action.state is ActionState.AWAITING_APPROVAL
    assert approvals_config(ApprovalSettings(), policies, APPROVAL_KEYS).anonymous_approval(action) is True


def test_anonymous_approval_is_off_by_default(tmp_path: Path) -> None:
    policies = _policies(tmp_path, POLICY.replace("        anonymous_approval: true\n", ""))
    action = _restart_of(policies, "web-7d9f-abcde")
    assert approvals_config(ApprovalSettings(), policies, APPROVAL_KEYS).anonymous_approval(action) is False


def test_a_high_risk_action_cannot_be_marked_anonymous(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError) as info:
        _policies(tmp_path, POLICY.replace("risk: low", "risk: high"))
    assert "a high-risk action needs a named approver; remove anonymous_approval" in str(info.value)

