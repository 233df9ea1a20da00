"""A dry run reads ``dry-run`` wherever people see it (audit, Slack, DingTalk, demo), never ``succeeded``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from executors.notify.dingtalk import _action_lines
from executors.notify.slack import _action_section
from schemas.codec import make_codec
from schemas.records import ActionEvent, ActionState, AuditRecord, Risk
from streams.stages.audit import Audit, content_id
from streams.stages.core import StageContext

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def _action(dry_run: bool, state: ActionState = ActionState.SUCCEEDED) -> ActionEvent:
    return ActionEvent(tenant="acme", action_id="a-1", incident_id="i-1", alert_class="etcd_latency",
                       name="restart_etcd", tool="k8s", operation="rollout_restart", risk=Risk.HIGH,
                       state=state, dry_run=dry_run, result="restarted", at=T0)


def _audited(action: ActionEvent) -> AuditRecord:
    audit = Audit(context=StageContext(clock=lambda: T0))
    result = audit(action, None, content_id(make_codec(None).encode(action, topic="actions")))
    return next(o.record for o in result.outputs if isinstance(o.record, AuditRecord))


@pytest.mark.parametrize(("dry_run", "said"), [(True, "dry-run"), (False, "succeeded")])
def test_a_finished_action_is_called_what_it_was(dry_run: bool, said: str) -> None:
    action = _action(dry_run)
    assert action.outcome == said
    assert _audited(action).action == f"restart_etcd:{said}"
    slack = _action_section(action)["text"]["text"]
    assert f"*{said}*: restarted" in slack
    assert f"  - {said}: restarted" in _action_lines(action)
    if dry_run:
        assert "succeeded" not in slack and "succeeded" not in "\n".join(_action_lines(action))


def test_other_states_keep_their_names_in_a_dry_run() -> None:
    assert _action(True, ActionState.FAILED).outcome == "failed"
    assert _action(True, ActionState.APPROVED).outcome == "approved"
