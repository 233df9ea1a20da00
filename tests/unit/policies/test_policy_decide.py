"""Decide: the policy disposes; low risk runs, high risk waits for approval, anything else is rejected."""

from __future__ import annotations

from datetime import datetime, timedelta

from policies import PolicySet, cooldown_key, decide, dedup, triage
from schemas.records import ActionState, Approval, ProposedAction, RcaResult, Risk
from tests.unit.policies.conftest import EventFactory
from tests.unit.policies.policy_samples import REALISTIC


def _result(policies: PolicySet, make_event: EventFactory, now: datetime, class_id: str, **kw: object) -> RcaResult:
    alert, labels = REALISTIC[class_id]
    event = make_event(alert, labels, **kw)
    incident = dedup(None, event, policies.dedup_window(event.alert_class), now).incident
    assert incident is not None
    return triage(incident, policies, now)


def _with_actions(result: RcaResult, *actions: ProposedAction) -> RcaResult:
    return result.model_copy(update={"actions": list(actions)})


def test_low_risk_is_approved_and_high_risk_awaits_approval(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    result = _result(policies, make_event, now, "jenkins_restart")
    accepted, rejected = decide(result, policies, now)
    assert rejected == []
    states = {a.name: a for a in accepted}
    collect = states["collect_diagnostics"]
    assert collect.state is ActionState.APPROVED and collect.expires_at is None and collect.dry_run
    restart = states["restart_controller"]
    assert restart.state is ActionState.AWAITING_APPROVAL and restart.risk is Risk.HIGH
    assert restart.expires_at == now + timedelta(hours=1)
    assert restart.action_id == next(a.action_id for a in result.actions if a.name == "restart_controller")
    assert all(a.tenant == "acme" and a.incident_id == result.incident_id and a.at == now for a in accepted)


def test_approval_ttl_can_be_set_per_action(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    accepted, _ = decide(_result(policies, make_event, now, "etcd_latency"), policies, now)
    restart = next(a for a in accepted if a.name == "restart_etcd_member")
    assert restart.state is ActionState.AWAITING_APPROVAL
    assert restart.expires_at == now + timedelta(minutes=30)


def test_risk_comes_from_the_policy_not_the_proposal(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    result = _result(policies, make_event, now, "log_flood")
    restart = next(a for a in result.actions if a.name == "restart_pod")
    claimed_low = restart.model_copy(update={"risk": Risk.LOW, "approval": Approval.AUTO})
    accepted, rejected = decide(_with_actions(result, claimed_low), policies, now)
    assert rejected == []
    assert accepted[0].state is ActionState.AWAITING_APPROVAL and accepted[0].risk is Risk.HIGH


def test_action_not_in_policy_is_rejected_with_reason(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    result = _result(policies, make_event, now, "jenkins_restart")
    invented = ProposedAction(
        action_id="x",
        name="drop_database",
        tool="k8s",
        operation="delete_pod",
        params={"namespace": "amamba-system", "pod": "amamba-jenkins-0"},
    )
    accepted, rejected = decide(_with_actions(result, invented), policies, now)
    assert accepted == []
    assert rejected[0].state is ActionState.REJECTED
    assert (rejected[0].name, rejected[0].tool, rejected[0].operation) == ("drop_database", "k8s", "delete_pod")
    assert rejected[0].params == invented.params
    assert rejected[0].reason == "action 'drop_database' is not in the policy for class jenkins_restart"
    assert rejected[0].action_id != invented.action_id


def test_wrong_operation_for_a_known_action_is_rejected(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    result = _result(policies, make_event, now, "jenkins_restart")
    collect = next(a for a in result.actions if a.name == "collect_diagnostics")
    sneaky = collect.model_copy(update={"tool": "k8s", "operation": "delete_pod"})
    _, rejected = decide(_with_actions(result, sneaky), policies, now)
    assert rejected[0].reason.startswith("action collect_diagnostics must be diagnostics.collect")


def test_params_outside_the_policy_are_rejected(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    result = _result(policies, make_event, now, "vminsert_write_errors")
    scale = next(a for a in result.actions if a.name == "scale_vminsert")
    cases = {
        "replicas": ({**scale.params, "replicas": "50"}, "params.replicas '50' is not one of"),
        "other target": (
            {**scale.params, "name": "vmstorage-insight-victoria-metrics-k8s-stack"},
            "is not the incident's target 'vminsert-insight-victoria-metrics-k8s-stack'",
        ),
        "other namespace": ({**scale.params, "namespace": "kube-system"}, "params.namespace 'kube-system' is not"),
        "kind": ({**scale.params, "kind": "statefulset"}, "is not the policy's value 'deployment'"),
        "extra": ({**scale.params, "force": "true"}, "parameter(s) not in policy: force"),
        "missing": ({k: v for k, v in scale.params.items() if k != "replicas"}, "missing parameter(s): replicas"),
    }
    for name, (params, reason) in cases.items():
        accepted, rejected = decide(_with_actions(result, scale.model_copy(update={"params": params})), policies, now)
        assert accepted == [], name
        assert reason in rejected[0].reason, (name, rejected[0].reason)
    allowed = scale.model_copy(update={"params": {**scale.params, "replicas": "4"}})
    accepted, rejected = decide(_with_actions(result, allowed), policies, now)
    assert rejected == [] and accepted[0].params["replicas"] == "4"


def test_hostile_param_values_never_pass(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    result = _result(policies, make_event, now, "log_flood")
    annotate = next(a for a in result.actions if a.name == "exclude_pod_logs")
    for key, value in [
        ("pod", 'a"}) or vector(1) #'),
        ("namespace", "kube-system; rm -rf /"),
        ("key", "fluentbit.io/exclude\nx"),
        ("value", "$(reboot)"),
    ]:
        hostile = annotate.model_copy(update={"params": {**annotate.params, key: value}})
        accepted, rejected = decide(_with_actions(result, hostile), policies, now)
        assert accepted == [], key
        assert "is not a valid" in rejected[0].reason
        assert rejected[0].state is ActionState.REJECTED
        assert key not in rejected[0].params, "an unvalidated value is never published as a parameter"
        assert f"parameter(s) not recorded: {key}" in rejected[0].reason


def test_hostile_incident_labels_make_bound_params_uncheckable(
    policies: PolicySet, make_event: EventFactory, now: datetime
) -> None:
    alert, labels = REALISTIC["jenkins_restart"]
    good = _result(policies, make_event, now, "jenkins_restart")
    event = make_event(alert, {**labels, "namespace": 'x"}) or vector(1) #'})
    incident = dedup(None, event, policies.dedup_window(event.alert_class), now).incident
    assert incident is not None
    # An LLM proposes a well-formed action for an incident whose label is hostile: it cannot be bound.
    result = good.model_copy(update={"incident": incident, "incident_id": incident.incident_id})
    accepted, rejected = decide(result, policies, now)
    assert accepted == []
    assert all("cannot be checked against the incident" in r.reason for r in rejected)


def test_preconditions_are_rechecked(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    flapping = _result(policies, make_event, now, "jenkins_restart", times=4)
    silence = next(a for a in flapping.actions if a.name == "silence_flapping")
    once = _result(policies, make_event, now, "jenkins_restart", times=1)
    _, rejected = decide(_with_actions(once, silence), policies, now)
    assert rejected[0].reason == "precondition not met: times >= 3"


def test_cooldown(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    result = _result(policies, make_event, now, "jenkins_restart")
    key = cooldown_key(result.tenant, result.incident.fingerprint, "collect_diagnostics")
    accepted, rejected = decide(result, policies, now, last_run={key: now - timedelta(minutes=5)})
    assert [r.name for r in rejected] == ["collect_diagnostics"]
    assert rejected[0].reason.startswith("in cooldown until")
    accepted, rejected = decide(result, policies, now, last_run={key: now - timedelta(minutes=11)})
    assert rejected == [] and "collect_diagnostics" in {a.name for a in accepted}


def test_duplicates_and_unclassified(policies: PolicySet, make_event: EventFactory, now: datetime) -> None:
    result = _result(policies, make_event, now, "jenkins_restart")
    collect = next(a for a in result.actions if a.name == "collect_diagnostics")
    accepted, rejected = decide(_with_actions(result, collect, collect), policies, now)
    assert len(accepted) == 1 and rejected[0].reason == "action collect_diagnostics proposed twice for one incident"
    assert rejected[0].action_id != accepted[0].action_id, "a rejection never overwrites the accepted action's state"

    event = make_event("KubePodCrashLooping", {"namespace": "shop", "workload": "api-0"})
    incident = dedup(None, event, timedelta(minutes=30), now).incident
    assert incident is not None
    stray = result.model_copy(update={"incident": incident, "alert_class": "unclassified", "actions": [collect]})
    accepted, rejected = decide(stray, policies, now)
    assert accepted == [] and rejected[0].reason == "no policy class 'unclassified': nothing may run"
