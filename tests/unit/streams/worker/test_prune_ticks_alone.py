"""Prune ticks in Faust's own test context (no broker): the dedup, correlate and decide tables forget rows
no later record needs, keep the rest, and a repeat inside its window still joins its incident after a tick."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from schemas.records import AlertEvent, AlertStatus, Incident
from streams.notify.requests import PRUNE_TICK
from streams.settings import Settings, WorkerSettings
from streams.stages.table_pruning import longest_dedup_window
from streams.wiring.runtime import build_stages
from streams.worker.agents import NotifyRequests, register_dedup, register_notify
from streams.worker.app import WorkerApp
from tests.unit.streams.worker.test_agents_alone import CODEC, Wire

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
MARGIN = timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at


def _event(event_id: str, fingerprint: str, status: AlertStatus = AlertStatus.FIRING,
           alert_class: str = "etcd_latency") -> AlertEvent:
    return AlertEvent(tenant="acme", event_id=event_id, fingerprint=fingerprint, alert="etcdHighFsyncDurations",
                      severity="P2", alert_class=alert_class, received_at=START, parser="test", status=status)


def test_a_tick_forgets_done_dedup_rows_keeps_live_ones_and_a_repeat_still_joins_its_incident(
    tmp_path: Path,
) -> None:
    wire, clock = Wire(), Clock()
    settings = Settings(worker=WorkerSettings(data_dir=tmp_path, prune_margin_s=MARGIN.total_seconds()))
    worker = WorkerApp(settings, "127.0.0.1:9", CODEC, deliver=wire.deliver)
    stages = build_stages(settings, clock=clock)
    register_dedup(worker, stages.dedup)
    register_notify(worker, None, NotifyRequests(worker, enabled=False), stages.context)
    worker.app.finalize()
    worker.app.flow_control.resume()
    table = worker.tables.dedup_state
    past_every_window = longest_dedup_window([stages.policies]) + MARGIN

    async def feed() -> None:
        async with worker.app.agents["dedup"].test_context() as dedup, \
                worker.app.agents["notify"].test_context() as notify:

            async def alert(event: AlertEvent) -> None:
                await dedup.put(key=f"acme:{event.fingerprint}".encode(),
                                value=CODEC.encode(event, topic="normalized"))

            async def tick() -> None:
                for partition in range(worker.partitions):
                    await notify.put(key=b"prune", value=PRUNE_TICK, partition=partition)

            await alert(_event("r-1", "resolved-long-ago"))
            await alert(_event("r-2", "resolved-long-ago", AlertStatus.RESOLVED))
            await alert(_event("o-1", "open-long-ago"))
            clock.at = START + past_every_window
            await alert(_event("f-1", "fresh"))
            await tick()
            assert sorted(table) == ["acme:fresh", "acme:open-long-ago"]  # resolved and past its window: gone

            # An incident nobody resolved is kept for a week after its last alert, then forgotten too.
            clock.at = START + timedelta(days=7, hours=1)
            await alert(_event("f-2", "fresh"))  # a new incident: its window passed long ago
            await tick()
            assert sorted(table) == ["acme:fresh"]

            # A repeat inside the window, after the tick, joins the incident the row still holds.
            clock.at += timedelta(minutes=5)
            await alert(_event("f-3", "fresh"))

            # A flapping alert (1 h window): resolved, quiet for longer than the margin, swept; its re-fire
            # inside the window still reopens the same incident.
            flap = clock.at
            await alert(_event("x-1", "flapping", alert_class="jenkins_restart"))
            clock.at = flap + timedelta(minutes=1)
            await alert(_event("x-2", "flapping", AlertStatus.RESOLVED, alert_class="jenkins_restart"))
            clock.at = flap + timedelta(minutes=30)
            await tick()
            clock.at = flap + timedelta(minutes=31)
            await alert(_event("x-3", "flapping", alert_class="jenkins_restart"))

    asyncio.run(feed())
    fresh = [i for i in wire.records("rcaflow-correlate-input") if isinstance(i, Incident) and i.fingerprint == "fresh"]
    assert [(i.count, i.last_event_id) for i in fresh] == [(1, "f-1"), (1, "f-2"), (2, "f-3")]
    assert fresh[1].incident_id == fresh[2].incident_id != fresh[0].incident_id
    assert table["acme:fresh"]["count"] == 2
    flapping = [i for i in wire.records("rcaflow-correlate-input")
                if isinstance(i, Incident) and i.fingerprint == "flapping"]
    assert [(i.count, i.state.value) for i in flapping] == [(1, "open"), (2, "resolved"), (3, "open")]
    assert len({i.incident_id for i in flapping}) == 1
    # The deletes are table writes like any other: tombstones on the changelog, awaited before the tick's ack.
    changelog = table.changelog_topic.get_topic_name()
    deleted = [key for name, key, value in wire.sent if name == changelog and not value]
    assert sorted(deleted) == [b'"acme:open-long-ago"', b'"acme:resolved-long-ago"']
