"""Per-tenant policy overlays tighten the shared policy and are refused, naming the field, when they loosen it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policies import PolicyFileError, PolicySet
from policies.tenant_overlay import apply_overlay
from schemas.records import Approval, Risk


def _overlay(policies: PolicySet, text: str) -> PolicySet:
    return apply_overlay(policies, text, "acme", file="acme.yaml")


def _refusal(policies: PolicySet, text: str) -> str:
    with pytest.raises(PolicyFileError) as caught:
        _overlay(policies, text)
    return str(caught.value)


def test_tightening_applies(policies: PolicySet) -> None:
    tight = _overlay(policies, """
version: 1
disable_classes: [log_flood]
classes:
  jenkins_restart:
    disable_actions: [restart_controller]
    thresholds: {crash_looping: 5}
    actions:
      collect_diagnostics: {approval: required, cooldown: 1h, approval_ttl: 10m}
      silence_flapping: {risk: high, params: {duration: {allowed: ['30m']}}}
""")
    jenkins = tight.get("jenkins_restart")
    assert jenkins is not None
    assert jenkins.action("restart_controller") is None
    assert tight.disabled[("jenkins_restart", "restart_controller")].startswith("action restart_controller is disabled")
    collect = jenkins.action("collect_diagnostics")
    assert collect is not None and collect.approval is Approval.REQUIRED and collect.cooldown == timedelta(hours=1)
    assert tight.approval_ttl("jenkins_restart", "collect_diagnostics") == timedelta(minutes=10)
    silence = jenkins.action("silence_flapping")
    assert silence is not None and silence.risk is Risk.HIGH and silence.params["duration"].allowed == ["30m"]
    assert "restarts_1h >= 5.0" in [t.expr for t in jenkins.spec.thresholds]
    flood = tight.get("log_flood")
    assert flood is not None and flood.spec.actions == []
    # The base is untouched: other tenants keep it.
    base = policies.get("jenkins_restart")
    assert base is not None and base.action("restart_controller") is not None and policies.disabled == {}


@pytest.mark.parametrize(("body", "field", "says"), [
    ("actions: {restart_controller: {risk: low}}", "classes.jenkins_restart.actions.restart_controller.risk",
     "'low' is lower than the base policy's 'high'"),
    ("actions: {restart_controller: {approval: auto}}", "classes.jenkins_restart.actions.restart_controller.approval",
     "may not remove it"),
    ("actions: {restart_controller: {cooldown: 5m}}", "classes.jenkins_restart.actions.restart_controller.cooldown",
     "5m is shorter than the base policy's 1h"),
    ("actions: {restart_controller: {approval_ttl: 30d}}",
     "classes.jenkins_restart.actions.restart_controller.approval_ttl", "may only shorten it"),
    ("actions: {silence_flapping: {params: {duration: {allowed: ['1h', '1w']}}}}",
     "classes.jenkins_restart.actions.silence_flapping.params.duration.allowed", "'1w' not allowed by the base"),
    ("actions: {restart_controller: {params: {namespace: {allowed: ['kube-system']}}}}",
     "classes.jenkins_restart.actions.restart_controller.params.namespace.allowed", "cannot narrow it"),
    ("thresholds: {crash_looping: 1}", "classes.jenkins_restart.thresholds.crash_looping", "hold more often"),
    ("actions: {restart_controller: {anonymous_approval: true}}", "", "anonymous_approval"),
    ("actions: {restart_everything: {approval: required}}", "classes.jenkins_restart.actions.restart_everything",
     "not an action of class jenkins_restart"),
])
def test_a_loosening_overlay_is_refused_naming_the_field(policies: PolicySet, body: str, field: str,
                                                          says: str) -> None:
    message = _refusal(policies, f"version: 1\nclasses:\n  jenkins_restart:\n    {body}\n")
    assert "acme.yaml" in message and field in message and says in message


def test_an_unknown_class_or_field_is_refused(policies: PolicySet) -> None:
    assert "'no_such_class' is not a class" in _refusal(policies, "version: 1\ndisable_classes: [no_such_class]\n")
    assert "extra" in _refusal(policies, "version: 1\nrisk_floor: low\n").lower()
