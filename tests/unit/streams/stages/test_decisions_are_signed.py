"""What the worker approves carries the decision signature the executor checks, valid for a bounded time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from policies.decision_signature import DecisionKeys, DecisionSignatureError, SignatureProblem
from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    Decision,
    Incident,
    RawMail,
    RcaResult,
    Risk,
    SourceKind,
)
from streams.settings import SecuritySettings, Settings, TenantSettings
from streams.stages.approval import Approval
from streams.stages.core import Position, StageContext
from streams.wiring.runtime import build_stages
from tests.support.approval_keys import APPROVAL_KEYS, signed_decision

SAMPLES = Path(__file__).resolve().parents[4] / "samples"
T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
KEY = "d" * 40
KEYS = DecisionKeys.from_text(KEY)


def _settings() -> Settings:
    return Settings(tenants={"default": TenantSettings(namespaces=["*"])},
                    security=SecuritySettings(decision_key=SecretStr(KEY), auto_approval_valid_minutes=15))


def _decided(settings: Settings) -> dict[str, ActionEvent]:
    stages = build_stages(settings, clock=lambda: T0)
    mail = RawMail(tenant="acme", message_id="<m@x>", mailbox="t", source=SourceKind.FILE, received_at=T0,
                   raw=(SAMPLES / "jenkins_restart.eml").read_bytes())
    event = stages.normalize(mail, Position("raw-mail", 0, 1)).outputs[0].record
    assert isinstance(event, AlertEvent)
    incident = stages.dedup(event, None).outputs[0].record
    assert isinstance(incident, Incident)
    result = asyncio.run(stages.rca(incident)).outputs[0].record
    assert isinstance(result, RcaResult)
    return {o.record.name: o.record for o in stages.decide(result, None).outputs if isinstance(o.record, ActionEvent)}


def test_the_policy_signs_what_it_approves_by_itself_for_the_configured_window() -> None:
    decided = _decided(_settings())

    approved = decided["collect_diagnostics"]
    assert approved.state is ActionState.APPROVED
    KEYS.verify(approved, T0 + timedelta(minutes=15))
    assert approved.decided_at == T0 and approved.not_after == T0 + timedelta(minutes=15)
    with pytest.raises(DecisionSignatureError) as late:
        KEYS.verify(approved, T0 + timedelta(minutes=16))
    assert late.value.problem is SignatureProblem.EXPIRED
    # What waits for a person is not signed yet: nothing may run it before the approval.
    assert decided["restart_controller"].state is ActionState.AWAITING_APPROVAL
    assert decided["restart_controller"].signature is None


def test_a_human_approval_is_signed_for_the_actions_approval_ttl() -> None:
    awaiting = ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="etcd_latency",
                           name="restart_etcd_member", tool="k8s", operation="delete_pod", risk=Risk.HIGH,
                           params={"namespace": "kube-system", "pod": "etcd-0"},
                           state=ActionState.AWAITING_APPROVAL, at=T0, expires_at=T0 + timedelta(minutes=30))
    decision = signed_decision("acme", "a-1", decided_at=T0)
    approved_at = T0 + timedelta(minutes=5)
    approval = Approval(context=StageContext(clock=lambda: approved_at), keys=KEYS, approval_keys=APPROVAL_KEYS)

    (out,) = approval(decision, awaiting.model_dump(mode="json")).outputs

    assert isinstance(out.record, ActionEvent) and out.record.state is ActionState.APPROVED
    KEYS.verify(out.record, approved_at + timedelta(minutes=30))
    assert out.record.approver == "slack:U1" and out.record.not_after == approved_at + timedelta(minutes=30)
    rejected = approval(signed_decision("acme", "a-1", Decision.REJECT, decided_at=T0),
                        awaiting.model_dump(mode="json")).outputs[0].record
    assert isinstance(rejected, ActionEvent) and rejected.signature is None  # a refusal authorises nothing


def test_without_a_key_nothing_is_signed_and_the_worker_refuses_to_register_its_deciding_agents() -> None:
    from streams.errors import ConfigurationError
    from streams.worker.agents import require_signing

    unsigned = _decided(Settings(tenants={"default": TenantSettings(namespaces=["*"])}))
    assert unsigned["collect_diagnostics"].signature is None
    with pytest.raises(ConfigurationError, match=r"security\.decision_key is not set"):
        require_signing(None, "decide")
