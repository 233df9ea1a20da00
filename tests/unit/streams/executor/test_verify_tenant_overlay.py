"""The executor checks an approved record against its tenant's effective policy: what acme's overlay switched off
does not run for acme (even signed), what it made high risk needs acme's approver, and other keeps the base."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from policies import load_policies
from policies.decision_signature import DecisionKeys
from policies.tenant_overlay import apply_overlay
from policies.tenant_scope import TenantScope, TenantScopes
from schemas.records import ActionEvent, ActionState, Risk
from streams.executor.verify import ActionRefusedError, ActionVerifier, RefusalReason

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEYS = DecisionKeys.from_text("k" * 40)
NS = "insight-system"
BASE = load_policies()
ACME = apply_overlay(BASE, """
version: 1
classes:
  log_flood:
    disable_actions: [collect_diagnostics]
  vmalert_config_reload_failure:
    actions:
      reload_vmalert: {risk: high}
""", "acme")
VERIFIER = ActionVerifier(KEYS, BASE, approvers={"acme": {"slack:U1"}, "other": {"slack:U2"}},
                          scopes=TenantScopes([TenantScope("acme", namespaces=("*",)),
                                               TenantScope("other", namespaces=("*",))]),
                          registry=CollectorRegistry(), tenant_policies={"acme": ACME})


def _action(tenant: str, **changes: Any) -> ActionEvent:
    fields: dict[str, Any] = {
        "tenant": tenant, "action_id": f"{tenant}-1", "incident_id": "inc-1", "alert_class": "log_flood",
        "name": "collect_diagnostics", "tool": "diagnostics", "operation": "collect",
        "params": {"namespace": NS, "workload": "fluent-bit-x7k2p"}, "risk": Risk.READ,
        "state": ActionState.APPROVED, "at": T0,
    }
    return KEYS.sign(ActionEvent(**{**fields, **changes}), decided_at=T0, valid_for=timedelta(hours=1))


def test_an_action_the_tenants_overlay_disabled_does_not_run_for_that_tenant_only() -> None:
    with pytest.raises(ActionRefusedError) as caught:
        VERIFIER.check(_action("acme"), T0)
    assert caught.value.reason is RefusalReason.NOT_IN_POLICY
    assert "not in the policy for class log_flood" in caught.value.message
    VERIFIER.check(_action("other"), T0)


def test_a_risk_the_overlay_raised_is_the_one_the_executor_expects_and_it_needs_an_approver() -> None:
    reload = {"alert_class": "vmalert_config_reload_failure", "name": "reload_vmalert", "tool": "http",
              "operation": "reload", "params": {"target": "vmalert"}}
    VERIFIER.check(_action("other", **reload, risk=Risk.LOW), T0)  # the base: low risk, automatic
    with pytest.raises(ActionRefusedError) as caught:
        VERIFIER.check(_action("acme", **reload, risk=Risk.HIGH), T0)
    assert caught.value.reason is RefusalReason.NO_APPROVER
    VERIFIER.check(_action("acme", **reload, risk=Risk.HIGH, approver="slack:U1"), T0)
