"""What the prune ticks may forget: rows of the dedup, decide and correlate tables no later record needs.

The tables here are the rows the real stages write (a JSON copy, as the worker keeps them); a row is
forgotten only when the stage would decide the same without it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from policies import load_policies
from policies.correlation import KEEP_AFTER
from schemas.records import ActionState, AlertStatus, Incident
from streams.settings import Settings, TenantSettings
from streams.stages.core import StageContext
from streams.stages.correlate import Correlate
from streams.stages.dedup import Dedup
from streams.stages.table_pruning import (
    Retention,
    forget_cooldowns,
    forget_dedup,
    forget_groups,
    longest_cooldown,
    longest_dedup_window,
)
from streams.wiring.runtime import build_stages
from tests.unit.policies.test_correlation import T0 as OPENED
from tests.unit.policies.test_correlation import incident
from tests.unit.streams.stages.test_decide_cooldown import T0, _decide, _triaged

CONTEXT = StageContext(clock=lambda: T0)
RETENTION = Retention(margin=timedelta(hours=1), open_keep=timedelta(days=7))


def test_the_longest_times_cover_every_class_and_action_of_the_policy() -> None:
    policies = load_policies()
    assert longest_dedup_window([policies]) == max(
        [policies.document.defaults.dedup_window, *(policies.dedup_window(c.spec.id) for c in policies.classes)])
    assert longest_cooldown([policies]) == max(a.cooldown for c in policies.classes for a in c.spec.actions)


def test_a_dedup_row_goes_once_resolved_and_past_its_window_and_a_later_alert_is_decided_as_with_it() -> None:
    now = [T0]
    stages = build_stages(Settings(), clock=lambda: now[0])
    window = longest_dedup_window([stages.policies])
    fire = incident(1, "etcd_latency").event
    table: dict[str, Any] = {}
    for event in (fire, fire.model_copy(update={"event_id": "ev-r", "status": AlertStatus.RESOLVED})):
        table["acme:fp-1"] = stages.dedup(event, table.get("acme:fp-1")).state

    assert forget_dedup(table, now=T0 + window, window=window, retention=RETENTION) == []  # margin not over
    now[0] = T0 + window + RETENTION.margin
    assert forget_dedup(table, now=now[0], window=window, retention=RETENTION) == ["acme:fp-1"]

    # Past the window a firing repeat opens a new incident, with or without the row.
    again = fire.model_copy(update={"event_id": "ev-2"})
    [out] = stages.dedup(again, None).outputs
    assert isinstance(out.record, Incident) and out.record.count == 1 and out.record.incident_id != "inc-1"


def test_an_open_incident_keeps_its_row_for_the_open_retention_after_its_last_alert() -> None:
    dedup = Dedup(load_policies(), context=CONTEXT)
    fire = incident(1, "etcd_latency").event
    table = {"acme:fp-1": dedup(fire, None).state}
    window = longest_dedup_window([dedup.policies])
    for later in (window + RETENTION.margin, RETENTION.open_keep - timedelta(minutes=1)):
        assert forget_dedup(table, now=T0 + later, window=window, retention=RETENTION) == []
    # Still open after a day: its "resolved" mail still resolves it.
    resolved = fire.model_copy(update={"event_id": "ev-r", "status": AlertStatus.RESOLVED})
    assert dedup(resolved, table["acme:fp-1"]).outcome == "resolved"
    assert forget_dedup(table, now=T0 + RETENTION.open_keep, window=window, retention=RETENTION) == ["acme:fp-1"]


def test_only_owned_and_readable_dedup_rows_are_swept() -> None:
    table: dict[str, Any] = {"acme:a": {"garbage": True}, "beta:b": Dedup(load_policies(), context=CONTEXT)(
        incident(2, "etcd_latency").event.model_copy(update={"status": AlertStatus.FIRING}), None).state}
    later = T0 + timedelta(days=30)
    assert forget_dedup(table, now=later, window=timedelta(hours=1), retention=RETENTION,
                        owned=lambda key: key.startswith("acme:")) == []
    assert forget_dedup(table, now=later, window=timedelta(hours=1), retention=RETENTION) == ["beta:b"]
    assert list(table) == ["acme:a"]  # the dedup stage reports a row it cannot read; the sweep leaves it


def test_a_cooldown_row_goes_once_every_entry_is_past_its_cooldown_and_the_action_is_proposed_again() -> None:
    now = [T0]
    stages = build_stages(Settings(tenants={"default": TenantSettings(namespaces=["*"])}), clock=lambda: now[0])
    first, memory = _decide(stages, _triaged(stages, 1), None)
    assert first["restart_controller"] is ActionState.AWAITING_APPROVAL
    table: dict[str, Any] = {"acme:fp": memory}
    cooldown = longest_cooldown([stages.policies])

    now[0] = T0 + cooldown + RETENTION.margin - timedelta(seconds=1)
    assert forget_cooldowns(table, now=now[0], cooldown=cooldown, margin=RETENTION.margin) == []
    now[0] += timedelta(seconds=2)
    assert forget_cooldowns(table, now=now[0], cooldown=cooldown, margin=RETENTION.margin) == ["acme:fp"]
    again, _ = _decide(stages, _triaged(stages, 2), table.get("acme:fp"))
    assert again["restart_controller"] is ActionState.AWAITING_APPROVAL  # as after the cooldown with the row


def test_a_cooldown_row_with_one_live_entry_stays_whole() -> None:
    old, live = (T0 - timedelta(days=1)).isoformat(), T0.isoformat()
    table: dict[str, Any] = {"acme:fp": {"acme:fp:a": f"{old} act-1", "acme:fp:b": f"{live} act-2"},
                             "acme:bad": {"acme:bad:a": "not a time"}, "acme:none-went-ahead": {}}
    assert forget_cooldowns(table, now=T0, cooldown=timedelta(minutes=30),
                            margin=RETENTION.margin) == ["acme:none-went-ahead"]
    assert sorted(table) == ["acme:bad", "acme:fp"]


def test_a_groups_row_goes_once_the_correlator_would_drop_every_group_in_it() -> None:
    # The correlator's clock is the incidents' opened_at (the dedup stage's clock when it opened them).
    stage = Correlate(load_policies(), context=CONTEXT)
    table: dict[str, Any] = {"acme:c1": stage(incident(1, "prometheus_remote_write_behind"), None).state}
    assert forget_groups(table, now=OPENED + KEEP_AFTER, margin=RETENTION.margin) == []
    assert forget_groups(table, now=OPENED + KEEP_AFTER + RETENTION.margin + timedelta(seconds=1),
                         margin=RETENTION.margin) == ["acme:c1"]


def test_what_decide_remembers_is_keyed_as_the_sweep_reads_it() -> None:
    # The sweep reads "<ISO time> <action id>" per entry: the format the decide stage writes.
    stages = build_stages(Settings(tenants={"default": TenantSettings(namespaces=["*"])}), clock=lambda: T0)
    _, memory = _decide(stages, _triaged(stages, 1), None)
    assert memory and all(v.split(" ")[0] == T0.isoformat() and len(v.split(" ")) == 2 for v in memory.values())
    assert all(isinstance(a, str) for a in memory)
