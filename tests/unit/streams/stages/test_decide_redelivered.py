"""A re-delivered analysis is decided once: no rejection "in cooldown" of itself, no refreshed cooldown.

After a worker restart the analyses since the last commit reach the decide stage again (and the rca
stage re-produces the ones whose incidents were re-delivered). Each used to be rejected "in cooldown"
of its own earlier decision, or, once the cooldown was over, approved again at the restart's time,
which put the next real alert of the target in cooldown.
"""

from __future__ import annotations

from datetime import timedelta

from schemas.records import ActionEvent, ActionState
from streams.settings import Settings, TenantSettings
from streams.wiring.runtime import build_stages
from tests.unit.streams.stages.test_decide_cooldown import T0, _decide, _triaged


def test_the_same_analysis_again_is_not_decided_again_in_or_after_the_cooldown() -> None:
    now = [T0]
    stages = build_stages(Settings(tenants={"default": TenantSettings(namespaces=["*"])}), clock=lambda: now[0])
    first = _triaged(stages, 1)
    states, memory = _decide(stages, first, None)
    assert states["collect_diagnostics"] is ActionState.APPROVED

    for later in (timedelta(seconds=5), timedelta(hours=3)):  # inside, then long after, every cooldown
        now[0] = T0 + later
        again = stages.decide(first, memory)
        assert [o.record for o in again.outputs if isinstance(o.record, ActionEvent)] == []
        assert again.state == memory  # the memory still says when it really went ahead

    # The target's next incident after the cooldown goes ahead like the first.
    states, _ = _decide(stages, _triaged(stages, 2), memory)
    assert states["collect_diagnostics"] is ActionState.APPROVED
    assert states["restart_controller"] is ActionState.AWAITING_APPROVAL


def test_a_memory_row_written_before_action_ids_were_kept_still_applies_the_cooldown() -> None:
    now = [T0]
    stages = build_stages(Settings(tenants={"default": TenantSettings(namespaces=["*"])}), clock=lambda: now[0])
    _, memory = _decide(stages, _triaged(stages, 1), None)
    old_rows = {key: value.split(" ")[0] for key, value in memory.items()}  # "<ISO time>" only
    now[0] = T0 + timedelta(minutes=10)
    states, _ = _decide(stages, _triaged(stages, 2), old_rows)
    assert states["restart_controller"] is ActionState.REJECTED
