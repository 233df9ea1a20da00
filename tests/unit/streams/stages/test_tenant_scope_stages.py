"""Tenant scope in the pipeline: a mail's sender must be its tenant's, and its actions must target the tenant's own
namespaces; the reproduced incident (acme's mail naming kube-system/coredns) gets no action at all."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from schemas.records import ActionEvent, ActionState, AlertEvent, DeadLetter, Incident, RawMail, RcaResult, SourceKind
from streams.settings import Settings, TenantSettings
from streams.stages.core import Position, StageContext, outputs
from streams.wiring.runtime import Stages, build_stages
from tests.support.tenant_mail import jenkins_mail

SAMPLES = Path(__file__).resolve().parents[4] / "samples"
T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
ACME_SENDER = "DCE5 Insight <insight@alerts.acme.test>"
TWO_TENANTS = Settings(tenants={
    "acme": TenantSettings(namespaces=["team-a-*"], senders=["*@alerts.acme.test"]),
    "other": TenantSettings(namespaces=["kube-system", "team-b"], senders=["*@alerts.other.test"]),
})


def _mail(tenant: str, raw: bytes, offset: int = 1) -> tuple[RawMail, Position]:
    return (RawMail(tenant=tenant, message_id=f"<m{offset}@x>", mailbox="t", source=SourceKind.FILE, received_at=T0,
                    raw=raw), Position("raw-mail", 0, offset))


def _decided(stages: Stages, tenant: str, raw: bytes) -> tuple[dict[str, ActionEvent], dict[str, str]]:
    """The mail through normalize, dedup, rca and decide: each action's record, and the cooldown memory."""
    normalized = stages.normalize(*_mail(tenant, raw))
    assert normalized.refused is None, normalized.refused
    event = normalized.outputs[0].record
    assert isinstance(event, AlertEvent)
    incident = stages.dedup(event, None).outputs[0].record
    assert isinstance(incident, Incident)
    result = asyncio.run(stages.rca(incident)).outputs[0].record
    assert isinstance(result, RcaResult)
    decided = stages.decide(result)
    actions = {o.record.name: o.record for o in decided.outputs if isinstance(o.record, ActionEvent)}
    # Every proposal is answered under its own id, refused or not, so whoever follows it sees it settle.
    assert {p.action_id for p in result.actions} == {a.action_id for a in actions.values()}
    return actions, decided.state or {}


def test_acme_naming_kube_system_gets_no_approved_and_no_pending_action() -> None:
    stages = build_stages(TWO_TENANTS, clock=lambda: T0)
    actions, memory = _decided(stages, "acme", jenkins_mail(sender=ACME_SENDER, namespace="kube-system",
                                                             pod="coredns-0"))
    assert set(actions) == {"collect_diagnostics", "restart_controller"}
    for action in actions.values():
        assert action.state is ActionState.REJECTED and action.expires_at is None
        assert action.reason == ("outside tenant scope: namespace 'kube-system' is not one of tenant acme's "
                                 "namespaces (team-a-*)")
    assert memory == {}  # nothing went ahead, so no cooldown starts


def test_the_same_mail_about_acmes_own_namespace_goes_ahead() -> None:
    stages = build_stages(TWO_TENANTS, clock=lambda: T0)
    actions, _ = _decided(stages, "acme", jenkins_mail(sender=ACME_SENDER, namespace="team-a-ci", pod="jenkins-0"))
    assert actions["collect_diagnostics"].state is ActionState.APPROVED
    assert actions["restart_controller"].state is ActionState.AWAITING_APPROVAL


def test_an_unscoped_tenant_is_read_only() -> None:
    stages = build_stages(Settings(), clock=lambda: T0)
    actions, _ = _decided(stages, "default", (SAMPLES / "jenkins_restart.eml").read_bytes())
    assert {a.state for a in actions.values()} == {ActionState.REJECTED}
    assert all(a.reason == "outside tenant scope: tenant default has no namespaces configured, so it is read-only"
               for a in actions.values())


def test_a_cluster_wide_action_needs_the_whole_cluster() -> None:
    raw = (SAMPLES / "vmalert_config_reload_failure.eml").read_bytes()  # reload_vmalert: http.reload, no namespace
    one_namespace = build_stages(Settings(tenants={"default": TenantSettings(namespaces=["insight-system"])}))
    actions, _ = _decided(one_namespace, "default", raw)
    assert actions["reload_vmalert"].state is ActionState.REJECTED
    assert "names no namespace, so it would act on the whole cluster" in actions["reload_vmalert"].reason
    assert actions["collect_diagnostics"].state is ActionState.APPROVED  # insight-system is the tenant's

    whole = build_stages(Settings(tenants={"default": TenantSettings(namespaces=["*"])}))
    assert _decided(whole, "default", raw)[0]["reload_vmalert"].state is ActionState.APPROVED


def test_an_alert_from_a_cluster_outside_the_scope_gets_no_action() -> None:
    settings = Settings(tenants={"default": TenantSettings(namespaces=["*"], clusters=["ACME-*"])})
    actions, _ = _decided(build_stages(settings), "default", (SAMPLES / "jenkins_restart.eml").read_bytes())
    assert {a.state for a in actions.values()} == {ActionState.REJECTED}
    assert all("cluster 'HK-DCE5-PLATFORM' is not one of tenant default's clusters" in a.reason
               for a in actions.values())


def _normalized(settings: Settings, tenant: str, raw: bytes) -> list[object]:
    """What the normalize agent would send for the mail: events, or the dead letter with the original bytes."""
    stages = build_stages(settings)
    mail, where = _mail(tenant, raw)
    result = stages.normalize(mail, where)
    return [o.record for o in outputs("normalize", result, raw, where, StageContext())]


def test_a_mail_from_an_unknown_sender_is_dead_lettered_with_the_reason_and_not_triaged() -> None:
    raw = jenkins_mail(sender="Mallory <mallory@evil.test>", namespace="team-a-ci", pod="jenkins-0")
    (letter,) = _normalized(TWO_TENANTS, "acme", raw)
    assert isinstance(letter, DeadLetter)
    assert letter.stage == "normalize" and letter.tenant == "acme" and letter.payload == raw
    assert letter.error_type == "SenderNotAllowedError"
    assert letter.reason == "outside tenant scope: sender 'mallory@evil.test' is not one of tenant acme's senders"


def test_a_sender_of_the_other_tenant_cannot_speak_for_acme() -> None:
    raw = jenkins_mail(sender="insight@alerts.other.test", namespace="team-a-ci", pod="jenkins-0")
    (letter,) = _normalized(TWO_TENANTS, "acme", raw)
    assert isinstance(letter, DeadLetter)
    assert [type(r) for r in _normalized(TWO_TENANTS, "other", raw)] == [AlertEvent]


def test_a_mail_with_two_from_headers_names_no_sender() -> None:
    raw = jenkins_mail(sender=ACME_SENDER, namespace="team-a-ci", pod="jenkins-0")
    raw = raw.replace(b"From: ", b"From: mallory@evil.test\nFrom: ", 1)
    (letter,) = _normalized(TWO_TENANTS, "acme", raw)
    assert isinstance(letter, DeadLetter)
    assert "a mail without exactly one From address" in letter.reason


def test_a_mail_for_a_tenant_nobody_configured_is_dead_lettered() -> None:
    raw = jenkins_mail(sender=ACME_SENDER, namespace="team-a-ci", pod="jenkins-0")
    (letter,) = _normalized(TWO_TENANTS, "stranger", raw)
    assert isinstance(letter, DeadLetter) and "the tenant is not configured" in letter.reason


def test_one_tenant_without_senders_accepts_any_sender() -> None:
    raw = jenkins_mail(sender="anyone@anywhere.test")
    assert [type(r) for r in _normalized(Settings(), "default", raw)] == [AlertEvent]
