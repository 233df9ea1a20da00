"""The decide stage uses the tenant's effective policy: acme's overlay binds acme only, other keeps the base."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policies import PolicyFileError
from schemas.records import ActionEvent, ActionState, AlertEvent, Incident, RawMail, RcaResult, SourceKind
from streams.settings import Settings, TenantSettings
from streams.stages.core import Position
from streams.wiring.runtime import Stages, build_stages
from tests.support.tenant_mail import jenkins_mail

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
OVERLAY = """
version: 1
classes:
  jenkins_restart:
    disable_actions: [restart_controller]
    actions:
      collect_diagnostics: {approval: required}
"""


def _settings(overlay: Path) -> Settings:
    return Settings(tenants={
        "acme": TenantSettings(namespaces=["*"], senders=["*@alerts.acme.test"], policy_overlay=overlay),
        "other": TenantSettings(namespaces=["*"], senders=["*@alerts.other.test"]),
    })


def _decided(stages: Stages, tenant: str) -> dict[str, ActionEvent]:
    raw = jenkins_mail(sender=f"Insight <insight@alerts.{tenant}.test>", namespace="ci", pod="jenkins-0")
    mail = RawMail(tenant=tenant, message_id="<m@x>", mailbox="t", source=SourceKind.FILE, received_at=T0, raw=raw)
    normalized = stages.normalize(mail, Position("raw-mail", 0, 1))
    assert normalized.refused is None, normalized.refused
    event = normalized.outputs[0].record
    assert isinstance(event, AlertEvent)
    incident = stages.dedup(event, None).outputs[0].record
    assert isinstance(incident, Incident)
    result = asyncio.run(stages.rca(incident)).outputs[0].record
    assert isinstance(result, RcaResult)
    return {o.record.name: o.record for o in stages.decide(result).outputs if isinstance(o.record, ActionEvent)}


def test_the_overlay_binds_its_tenant_only(tmp_path: Path) -> None:
    overlay = tmp_path / "acme.yaml"
    overlay.write_text(OVERLAY, encoding="utf-8")
    stages = build_stages(_settings(overlay), clock=lambda: T0)

    acme = _decided(stages, "acme")
    assert acme["restart_controller"].state is ActionState.REJECTED
    assert acme["restart_controller"].reason == (
        "action restart_controller is disabled for tenant acme by its policy overlay")
    assert acme["collect_diagnostics"].state is ActionState.AWAITING_APPROVAL

    other = _decided(stages, "other")
    assert other["restart_controller"].state is ActionState.AWAITING_APPROVAL
    assert other["collect_diagnostics"].state is ActionState.APPROVED


def test_a_loosening_overlay_stops_the_process_from_starting(tmp_path: Path) -> None:
    overlay = tmp_path / "acme.yaml"
    overlay.write_text("version: 1\nclasses:\n  jenkins_restart:\n    actions:\n"
                       "      restart_controller: {approval: auto}\n", encoding="utf-8")
    with pytest.raises(PolicyFileError, match=r"restart_controller\.approval: .*may not remove it"):
        build_stages(_settings(overlay), clock=lambda: T0)
