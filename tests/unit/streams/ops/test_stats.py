"""`rcaflow stats`: the week's numbers per alert class, from the rca-result and actions records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.records import ActionEvent, ActionState, AlertEvent, Engine, Incident, RcaResult, Risk
from streams.ops.stats import render, summarize

A, W, R, S, F, B, J = (ActionState.APPROVED, ActionState.AWAITING_APPROVAL, ActionState.RUNNING,
                       ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK, ActionState.REJECTED)

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def _result(incident_id: str, cls: str, *, after_s: float, engine: Engine = Engine.POLICY, count: int = 1,
            opened: datetime = T0, tokens: int | None = None) -> RcaResult:
    event = AlertEvent(tenant="acme", event_id=f"{incident_id}-e", fingerprint=f"fp-{incident_id}", alert="A",
                       severity="P2", alert_class=cls, received_at=opened, parser="dce5")
    incident = Incident(tenant="acme", incident_id=incident_id, fingerprint=event.fingerprint, alert_class=cls,
                        opened_at=opened, last_seen_at=opened, count=count, last_event_id=event.event_id,
                        event=event)
    return RcaResult(tenant="acme", incident_id=incident_id, alert_class=cls, engine=engine, diagnosis="d",
                     produced_at=opened + timedelta(seconds=after_s), incident=incident, tokens=tokens)


def _updates(result: RcaResult, *counts: int) -> list[Incident]:
    """The incidents-topic records dedup writes as alerts fold into ``result``'s incident."""
    return [result.incident.model_copy(update={"count": count}) for count in counts]


def _action(action_id: str, incident_id: str, *states: tuple[ActionState, float], dry_run: bool = False,
            tool: str = "k8s") -> list[ActionEvent]:
    return [ActionEvent(tenant="acme", action_id=action_id, incident_id=incident_id, alert_class="x", name="n",
                        tool=tool, operation="scale", risk=Risk.HIGH, state=state, dry_run=dry_run,
                        at=T0 + timedelta(seconds=at)) for state, at in states]


def test_a_week_of_incidents_and_actions_per_class() -> None:
    results = [
        _result("i1", "etcd_latency", after_s=0.05),
        _result("i1", "etcd_latency", after_s=8.0, engine=Engine.LLM, tokens=900),
        _result("i2", "etcd_latency", after_s=0.15),
        _result("i3", "log_flood", after_s=0.1),
        _result("old", "log_flood", after_s=0.1, opened=T0 - timedelta(days=9)),  # before the window
    ]
    actions = [
        *_action("a1", "i1", (A, 1), (R, 2), (S, 3)),                       # auto-approved, ran
        *_action("a2", "i1", (W, 1), (A, 121), (R, 122), (F, 400), (B, 420)),  # waited 2 min, failed, rolled back
        *_action("a3", "i2", (W, 1), (J, 61)),                               # a human said no
        *_action("a4", "i3", (J, 1)),                                        # refused by the policy gate
        *_action("a5", "i3", (A, 1), (R, 2), (S, 3), dry_run=True),
        *_action("a6", "old", (A, 1), (R, 2), (S, 3)),                      # incident outside the window
        *_action("rb", "i1", (R, 401), (S, 419)),
    ]
    actions[-1] = actions[-1].model_copy(update={"rollback_of": "a2"})
    actions[-2] = actions[-2].model_copy(update={"rollback_of": "a2"})

    # i1 folded three alerts (one count update re-delivered); i2 has no update on the topic: its one alert.
    incidents = _updates(results[0], 1, 2, 3, 3) + _updates(results[3], 1)
    stats = summarize(results, actions, since=T0 - timedelta(days=7), incidents=incidents)

    etcd = stats["etcd_latency"].as_dict()
    assert etcd["incidents"] == 2 and etcd["alerts"] == 4  # 3 + 1, not one per incident
    assert etcd["to_triage_s"] == {"n": 2, "p50": 0.1, "p95": 0.15, "max": 0.15}
    assert etcd["to_llm_s"] == {"n": 1, "p50": 8.0, "p95": 8.0, "max": 8.0} and etcd["llm_tokens"] == 900
    assert (etcd["actions"], etcd["auto_approved"], etcd["human_approved"]) == (3, 1, 1)
    assert etcd["approval_wait_s"] == {"n": 1, "p50": 120.0, "p95": 120.0, "max": 120.0}
    assert etcd["outcomes"] == {"rejected": 1, "rolled_back": 1, "succeeded": 1}
    flood = stats["log_flood"].as_dict()
    assert flood["incidents"] == 1 and flood["refused_by_policy"] == 1 and flood["dry_runs"] == 1
    assert flood["outcomes"] == {"dry_run": 1}  # simulated, not "succeeded"
    everything = stats["*"].as_dict()
    assert everything["incidents"] == 3 and everything["actions"] == 4
    lines = render(stats)
    assert lines[2].startswith("etcd_latency") and lines[-1].startswith("all classes")
    assert "rolled_back 1" in lines[2]


def test_another_tenant_is_not_counted() -> None:
    stats = summarize([_result("i1", "etcd_latency", after_s=0.1)], [], since=T0 - timedelta(days=1),
                      tenant="other")
    assert stats["*"].incidents == 0 and list(stats) == ["*"]


def test_an_action_withdrawn_because_its_incident_resolved_is_its_own_outcome() -> None:
    result = _result("i1", "etcd_latency", after_s=0.05)
    actions = _action("a1", "i1", (W, 1), (ActionState.WITHDRAWN, 300))
    stats = summarize([result], actions, since=T0 - timedelta(days=1), incidents=_updates(result, 1))
    etcd = stats["etcd_latency"].as_dict()
    assert etcd["outcomes"] == {"withdrawn": 1}
    assert (etcd["auto_approved"], etcd["human_approved"]) == (0, 0)
