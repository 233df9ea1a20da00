"""The executor's check of an approved record: the policy still allows it, the right person approved it, the
tenant may touch the target; a refusal keeps the record and answers it with an unsigned ``rejected`` record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from policies import DEFAULT_POLICY_FILE, load_policies, parse_policies
from policies.decision_signature import DecisionKeys
from policies.tenant_scope import TenantScope, TenantScopes
from schemas.records import ActionEvent, ActionState, Risk
from streams.executor.rollbacks import rollback_action
from streams.executor.verify import ActionRefusedError, ActionVerifier, RefusalReason

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEYS = DecisionKeys.from_text("k" * 40)
NS = "insight-system"


def _verifier(policies: Any = None, namespaces: tuple[str, ...] = (NS,),
              registry: CollectorRegistry | None = None) -> ActionVerifier:
    return ActionVerifier(KEYS, policies or load_policies(), approvers={"acme": {"slack:U1"}},
                          scopes=TenantScopes([TenantScope("acme", namespaces=namespaces)]),
                          registry=registry or CollectorRegistry())


def _collect(**changes: Any) -> ActionEvent:
    """An auto-approved read-only action, as the decide stage writes it."""
    fields: dict[str, Any] = {
        "tenant": "acme", "action_id": "a-1", "incident_id": "inc-1", "alert_class": "log_flood",
        "name": "collect_diagnostics", "tool": "diagnostics", "operation": "collect",
        "params": {"namespace": NS, "workload": "fluent-bit-x7k2p"}, "risk": Risk.READ,
        "state": ActionState.APPROVED, "at": T0,
    }
    return ActionEvent(**{**fields, **changes})


def _restart(**changes: Any) -> ActionEvent:
    """A high-risk action that needs a human."""
    return _collect(alert_class="vmalert_config_reload_failure", name="restart_vmalert", tool="k8s",
                    operation="rollout_restart", params={"namespace": NS, "kind": "deployment", "name": "vmalert"},
                    risk=Risk.HIGH, on_failure="undo", **changes)


def _signed(action: ActionEvent) -> ActionEvent:
    return KEYS.sign(action, decided_at=T0, valid_for=timedelta(hours=1))


def _refused(verifier: ActionVerifier, action: ActionEvent) -> ActionRefusedError:
    with pytest.raises(ActionRefusedError) as caught:
        verifier.check(action, T0)
    return caught.value


def test_a_signed_action_the_policy_allows_passes() -> None:
    _verifier().check(_signed(_collect()), T0)
    _verifier().check(_signed(_restart(approver="slack:U1")), T0)


@pytest.mark.parametrize(("changes", "why"), [
    ({"name": "wipe_cluster"}, "not in the policy"),
    ({"alert_class": "no_such_class"}, "no policy class"),
    ({"tool": "k8s", "operation": "delete_pod"}, "must be diagnostics.collect"),
    ({"params": {"namespace": NS, "workload": "fluent-bit-x7k2p", "extra": "x"}}, "not in policy"),
    ({"params": {"namespace": "Not A Namespace", "workload": "x"}}, "is not a valid"),
    ({"risk": Risk.LOW}, "is not the policy's read"),
])
def test_what_the_policy_does_not_allow_is_refused_even_when_signed(changes: dict[str, Any], why: str) -> None:
    refused = _refused(_verifier(), _signed(_collect(**changes)))

    assert refused.reason is RefusalReason.NOT_IN_POLICY
    assert why in refused.message


def test_a_parameter_outside_the_policy_choices_is_refused() -> None:
    scale = _collect(alert_class="vminsert_write_errors", name="scale_vminsert", tool="k8s", operation="scale",
                     params={"namespace": NS, "kind": "deployment", "name": "vminsert", "replicas": "60"},
                     risk=Risk.HIGH, on_failure="undo", approver="slack:U1")
    refused = _refused(_verifier(), _signed(scale))
    assert refused.reason is RefusalReason.NOT_IN_POLICY and "replicas" in refused.message


@pytest.mark.parametrize("approver", [None, "slack:U9", "link:anonymous"])
def test_a_high_risk_action_needs_one_of_the_tenants_approvers(approver: str | None) -> None:
    refused = _refused(_verifier(), _signed(_restart(approver=approver)))
    assert refused.reason is RefusalReason.NO_APPROVER


def test_restarting_a_prometheus_is_high_risk_whatever_the_policy_file_says() -> None:
    """A policy may make restarting a pod low risk; restarting a Prometheus pod with it still needs a human."""
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8")
    start = text.index("      - name: restart_pod", text.index("  - id: log_flood"))
    block = text[start:text.index("approval: required", start) + len("approval: required")]
    relaxed = parse_policies(text.replace(block, block.replace("risk: high", "risk: low")
                                          .replace("approval: required", "approval: auto")))
    delete = _collect(name="restart_pod", tool="k8s", operation="delete_pod",
                      params={"namespace": NS, "pod": "prometheus-k8s-0"})

    low = _refused(_verifier(relaxed), _signed(delete.model_copy(update={"risk": Risk.LOW})))
    unapproved = _refused(_verifier(relaxed), _signed(delete.model_copy(update={"risk": Risk.HIGH})))

    assert low.reason is RefusalReason.NOT_IN_POLICY and "policy's high" in low.message
    assert unapproved.reason is RefusalReason.NO_APPROVER
    _verifier(relaxed).check(_signed(delete.model_copy(update={"risk": Risk.HIGH, "approver": "slack:U1"})), T0)


def test_a_target_outside_the_tenants_write_scope_is_refused() -> None:
    assert _refused(_verifier(namespaces=("team-a-*",)), _signed(_collect())).reason is RefusalReason.OUT_OF_SCOPE
    assert _refused(_verifier(namespaces=()), _signed(_collect())).reason is RefusalReason.OUT_OF_SCOPE


def test_unsigned_forged_and_late_records_are_refused_before_anything_else() -> None:
    assert _refused(_verifier(), _collect()).reason is RefusalReason.UNSIGNED
    forged = DecisionKeys.from_text("w" * 40).sign(_collect(), decided_at=T0, valid_for=timedelta(hours=1))
    assert _refused(_verifier(), forged).reason is RefusalReason.UNKNOWN_KEY
    with pytest.raises(ActionRefusedError) as late:
        _verifier().check(_signed(_collect()), T0 + timedelta(hours=2))
    assert late.value.reason is RefusalReason.EXPIRED


def _finished_scale() -> ActionEvent:
    return _collect(alert_class="vminsert_write_errors", name="scale_vminsert", tool="k8s", operation="scale",
                    params={"namespace": NS, "kind": "deployment", "name": "vminsert", "replicas": "4"},
                    risk=Risk.HIGH, state=ActionState.SUCCEEDED, dry_run=False, undo_action="k8s.scale",
                    undo_params={"namespace": NS, "kind": "deployment", "name": "vminsert", "replicas": "2"})


def test_a_requested_rollback_of_a_policy_action_passes_and_names_its_operator() -> None:
    plan = rollback_action(_finished_scale(), state=ActionState.APPROVED, at=T0, keys=KEYS, reason="r",
                           approver="alice")
    _verifier().check(plan, T0)
    nobody = rollback_action(_finished_scale(), state=ActionState.APPROVED, at=T0, keys=KEYS, reason="r")
    assert _refused(_verifier(), nobody).reason is RefusalReason.NO_APPROVER


def test_a_rollback_that_is_not_the_inverse_of_a_policy_action_is_refused() -> None:
    odd = _finished_scale().model_copy(update={"undo_action": "k8s.delete_pod", "undo_params": {"namespace": NS,
                                                                                                "pod": "x"}})
    plan = rollback_action(odd, state=ActionState.APPROVED, at=T0, keys=KEYS, reason="r", approver="alice")
    refused = _refused(_verifier(), plan)
    assert refused.reason is RefusalReason.NOT_IN_POLICY and "neither an inverse" in refused.message


@dataclass
class _Read:
    """Where a record was read, as a confluent-kafka Message tells it."""

    raw: bytes

    def topic(self) -> str:
        return "t.actions"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 41

    def key(self) -> bytes:
        return b"acme:a-1"

    def value(self) -> bytes:
        return self.raw


def test_a_refusal_is_kept_whole_and_answered_with_an_unsigned_rejected_record() -> None:
    registry = CollectorRegistry()
    verifier = _verifier(registry=registry)
    forged = _collect(approver="slack:U1", params={"namespace": NS, "workload": "x", "evil": "$(rm -rf /)"})
    error = _refused(verifier, forged)

    letter, rejected = verifier.refusal(error, forged, _Read(b"original bytes"), at=T0)

    assert (letter.stage, letter.source_topic, letter.partition, letter.offset) == ("executor", "t.actions", 2, 41)
    assert letter.payload == b"original bytes" and letter.key == b"acme:a-1" and letter.tenant == "acme"
    assert letter.reason.startswith("unsigned: ")
    assert rejected.state is ActionState.REJECTED and rejected.action_id == "a-1"
    assert rejected.signature is None and rejected.approver is None  # an unverified name is nobody's approval
    assert rejected.params == {"namespace": NS, "workload": "x"}  # untrusted text that fits no format is left out
    assert "refused by the executor (unsigned)" in rejected.reason
    assert registry.get_sample_value("rcaflow_executor_refused_total", {"reason": "unsigned", "tenant": "acme"}) == 1.0


def test_a_record_signed_for_longer_than_any_decider_grants_is_refused_as_expired() -> None:
    """The ledger reads back only the longest window a decider grants: a longer one could be replayed past it."""
    verifier = _verifier()
    assert verifier.max_valid_for == timedelta(hours=1)  # the bundled policy: 1 h approval TTLs, 1 h auto/rollback
    too_long = KEYS.sign(_collect(), decided_at=T0, valid_for=timedelta(hours=1, minutes=1))

    refused = _refused(verifier, too_long)

    assert refused.reason is RefusalReason.EXPIRED and "longer than any decider grants" in str(refused)
    longer = ActionVerifier(KEYS, load_policies(), approvers={}, scopes=TenantScopes([TenantScope("acme",
                            namespaces=(NS,))]), registry=CollectorRegistry(), auto_valid_for=timedelta(hours=2))
    longer.check(too_long, T0)  # a deployment whose auto-approvals are valid for 2 h grants that much
