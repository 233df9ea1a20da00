"""A click on an action whose incident resolved: refused as withdrawn (410), nothing published (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.records import ActionEvent, ActionState
from streams.api.actions_view import InMemoryPendingActions
from tests.unit.streams.api.approval_env import Env, click_body, make_env, post_slack
from tests.unit.streams.approval_helpers import action

WITHDRAWN_TEXT = "withdrawn: the incident resolved at 2026-11-25 12:00:00 UTC (alertmanager (event e-1))"


@pytest.fixture
def env() -> Iterator[Env]:
    yield from make_env()


def test_a_click_on_a_withdrawn_action_is_refused_with_the_reason(env: Env) -> None:
    env.pending.see(action(state=ActionState.WITHDRAWN, result=WITHDRAWN_TEXT))
    response = post_slack(env, click_body())
    assert response.status_code == 410 and response.json()["reason"] == "withdrawn"
    assert "was withdrawn because its incident resolved" in response.json()["detail"]
    assert env.decisions() == []
    assert [r.reason.value for r in env.rejections] == ["withdrawn"]


def test_the_pending_view_never_moves_a_withdrawn_action_back_to_waiting() -> None:
    pending = InMemoryPendingActions()
    pending.see(action(state=ActionState.WITHDRAWN, result=WITHDRAWN_TEXT))
    pending.see(action())  # the older awaiting record, re-read after a restart
    got = pending.get("act-1")
    assert isinstance(got, ActionEvent) and got.state is ActionState.WITHDRAWN
