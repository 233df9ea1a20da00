"""http.reload against a real vmalert (and Prometheus): the outcome must match what the server actually loaded.

vmalert answers POST /-/reload with 200 before it even reads the rules, so
these tests check that the executor reads the truth from vmalert's reload
metrics: a broken rules file is a failed action, good rules are a succeeded one
whose new group is served, and a dry run leaves vmalert untouched.
"""

from __future__ import annotations

import asyncio

import httpx

from executors import ExecutionOutcome, ToolRegistry, execute
from executors.tools.http_reload import ReloadEndpoints, ReloadKind, ReloadTarget
from schemas.records import ActionState
from tests.integration.vmalert.conftest import GOOD_RULES, RunningRuler
from tests.unit.executors.exec_helpers import NOW, action

NEW_GROUP = GOOD_RULES + """\
  - name: rcaflow-added
    rules:
      - alert: RcaflowReloadProbe
        expr: vector(1) > 2
"""

BROKEN = GOOD_RULES + """\
  - name: rcaflow-broken
    rules:
      - record: rcaflow:broken
        expr: sum(up
"""

SUCCESS_TS = "vmalert_config_last_reload_success_timestamp_seconds"
RELOADS = "vmalert_config_last_reload_total"


def reload(server: RunningRuler, *, dry_run: bool = False, kind: ReloadKind = ReloadKind.VMALERT) -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        async with httpx.AsyncClient(timeout=5) as client:
            endpoints = ReloadEndpoints(
                client, {kind.value: ReloadTarget(url=server.url, kind=kind)}, confirm_interval=0.2
            )
            return await execute(action("http.reload", {"target": kind.value}),
                                 registry=ToolRegistry({"http": endpoints}), dry_run=dry_run, now=NOW)
    return asyncio.run(go())


def test_good_rules_are_reloaded_and_served(vmalert: RunningRuler) -> None:
    assert vmalert.group_names() == ["rcaflow-base"]
    vmalert.write_rules(NEW_GROUP)
    outcome = reload(vmalert)
    assert outcome.ok, outcome.output
    assert f"POST {vmalert.url}/-/reload: 200" in outcome.output
    assert "confirmed by vmalert_config_last_reload_successful=1" in outcome.output
    assert sorted(vmalert.group_names()) == ["rcaflow-added", "rcaflow-base"]


def test_broken_rules_fail_the_action_although_vmalert_answered_200(vmalert: RunningRuler) -> None:
    vmalert.write_rules(BROKEN)
    outcome = reload(vmalert)
    assert outcome.state is ActionState.FAILED
    assert outcome.error_type == "UpstreamError" and not outcome.retriable
    assert "reload of vmalert failed: vmalert rejected the new configuration" in outcome.output
    assert "vmalert_config_last_reload_successful=0" in outcome.output
    assert vmalert.group_names() == ["rcaflow-base"], "vmalert keeps serving the previous rules"
    assert vmalert.metric("vmalert_config_last_reload_successful") == 0

    vmalert.write_rules(NEW_GROUP)
    fixed = reload(vmalert)
    assert fixed.ok, fixed.output
    assert sorted(vmalert.group_names()) == ["rcaflow-added", "rcaflow-base"]


def test_reloading_unchanged_rules_succeeds(vmalert: RunningRuler) -> None:
    outcome = reload(vmalert)
    assert outcome.ok, outcome.output
    assert "configuration unchanged" in outcome.output
    assert vmalert.metric(RELOADS) == 1


def test_dry_run_does_not_reload(vmalert: RunningRuler) -> None:
    reloads, success_at = vmalert.metric(RELOADS), vmalert.metric(SUCCESS_TS)
    vmalert.write_rules(NEW_GROUP)
    outcome = reload(vmalert, dry_run=True)
    assert outcome.ok and outcome.dry_run
    assert outcome.output == (f"dry run: would POST {vmalert.url}/-/reload "
                              "and confirm via vmalert_config_last_reload_successful")
    assert vmalert.metric(RELOADS) == reloads and vmalert.metric(SUCCESS_TS) == success_at
    assert vmalert.group_names() == ["rcaflow-base"]


def test_prometheus_reload_is_confirmed_and_serves_the_new_group(prometheus_ruler: RunningRuler) -> None:
    prometheus_ruler.write_rules(NEW_GROUP)
    outcome = reload(prometheus_ruler, kind=ReloadKind.PROMETHEUS)
    assert outcome.ok, outcome.output
    assert "confirmed by prometheus_config_last_reload_successful=1" in outcome.output
    assert sorted(prometheus_ruler.group_names()) == ["rcaflow-added", "rcaflow-base"]


def test_prometheus_rejecting_the_rules_is_a_final_failure(prometheus_ruler: RunningRuler) -> None:
    prometheus_ruler.write_rules(BROKEN)
    outcome = reload(prometheus_ruler, kind=ReloadKind.PROMETHEUS)
    assert outcome.state is ActionState.FAILED and not outcome.retriable
    assert "reload of prometheus failed: POST" in outcome.output and "500" in outcome.output
    assert prometheus_ruler.group_names() == ["rcaflow-base"]
    assert prometheus_ruler.metric("prometheus_config_last_reload_successful") == 0
