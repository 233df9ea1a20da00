"""Graph mail of a tenant over its ingest quota stays in the spool and is published by a later drain, never dropped."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from producers.msgraph import GraphIngest, MemorySpool
from producers.quota import IngestQuota, QuotaLimit
from schemas.records import RawMail
from streams.api.msgraph import create_msgraph_router
from tests.unit.producers.msgraph.conftest import (
    STATE,
    USER,
    RecordingPublisher,
    Sleeps,
    asgi_http,
    graph_client,
    mail,
    make_config,
)
from tests.unit.producers.msgraph.standin import GraphStandIn
from tests.unit.producers.msgraph.test_msgraph_webhook import WEBHOOK, created


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_mail_over_the_quota_waits_in_the_spool(standin: GraphStandIn) -> None:
    ids = [standin.add_message(USER, mail(f"<q{i}@x>"), f"<q{i}@x>") for i in range(3)]
    clock, registry = Clock(), CollectorRegistry()
    quota = IngestQuota.build({"acme": QuotaLimit(per_minute=60, burst=1)}, ["acme"], clock=clock, registry=registry)
    publisher, spool = RecordingPublisher(), MemorySpool()

    def published() -> list[str]:
        return [r.message_id for r in publisher.on("raw-mail") if isinstance(r, RawMail)]

    async def go() -> None:
        config = make_config(mailboxes=[{"user": USER, "tenant": "acme", "client_state": STATE}])
        async with asgi_http(standin) as http:
            ingest = GraphIngest(config, graph_client(standin, Sleeps(), http), publisher, spool, quota=quota)
            app = FastAPI()
            app.include_router(create_msgraph_router(ingest))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEBHOOK) as api:
                for mid in ids:  # Graph gets its answer at once, whatever the quota
                    assert (await api.post(WEBHOOK, json=created(mid))).status_code == 202
            await ingest.drain()
            assert published() == ["<q0@x>"] and len(spool.pending()) == 2
            clock.now += 1.0  # one mail's worth at 60/min
            await ingest.drain()
            assert published() == ["<q0@x>", "<q1@x>"] and len(spool.pending()) == 1
            clock.now += 60.0
            await ingest.drain()

    asyncio.run(go())
    assert published() == ["<q0@x>", "<q1@x>", "<q2@x>"] and spool.pending() == []
    assert publisher.on("dead-letter") == []
    assert (registry.get_sample_value("rcaflow_ingest_throttled_total", {"tenant": "acme", "source": "msgraph",
                                                                         "reason": "quota_exceeded"})
            or 0) >= 2
