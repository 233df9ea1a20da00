"""The API-process lifecycle: restore, catch up, drain what a crash left in the spool, keep going."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from producers.msgraph import FileSpool
from schemas.records import Checkpoint, RawMail
from streams.api.msgraph import build_msgraph, msgraph_running
from tests.unit.producers.msgraph.conftest import (
    USER,
    MemoryCheckpoints,
    RecordingPublisher,
    StandInTokens,
    asgi_http,
    mail,
    make_config,
)
from tests.unit.producers.msgraph.standin import GraphStandIn
from tests.unit.producers.msgraph.test_msgraph_webhook import created


def test_start_drains_the_spool_and_records_the_folder_position(standin: GraphStandIn, tmp_path: Path) -> None:
    mid = standin.add_message(USER, mail("<left-over@x>"), "<left-over@x>")
    spool = FileSpool(tmp_path)
    spool.put({"kind": "created", "mailbox": f"msgraph://{USER}/inbox", "subscription_id": "s1", "message_id": mid})
    publisher = RecordingPublisher()

    async def go() -> None:
        async with asgi_http(standin) as http:
            ingest = build_msgraph(make_config(), publisher, http, tokens=StandInTokens(standin), spool=spool)
            async with msgraph_running(ingest, MemoryCheckpoints(publisher), ensure_subscriptions=False):
                pass

    asyncio.run(go())
    assert [r.message_id for r in publisher.on("raw-mail") if isinstance(r, RawMail)] == ["<left-over@x>"]
    assert [type(r) for r in publisher.on("ingest-checkpoints")] == [Checkpoint]
    assert spool.pending() == []


def test_start_survives_graph_refusing_the_app_and_retries_later(
    standin: GraphStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    standin.fail_next("GET", f"/users/{USER}/mailFolders/inbox/messages/delta", 403)
    publisher = RecordingPublisher()

    async def go() -> None:
        async with asgi_http(standin) as http:
            ingest = build_msgraph(make_config(), publisher, http, tokens=StandInTokens(standin))
            async with msgraph_running(
                ingest, None, ensure_subscriptions=False, interval_seconds=0.05, initial_delay_seconds=0
            ) as running:
                # The webhook still accepts while Graph is unhappy; the maintenance loop catches up later.
                body = json.dumps(created(standin.add_message(USER, mail("<a@x>"), "<a@x>"))).encode()
                assert running.accept(body) == (1, 0)
                async with asyncio.timeout(30):
                    while len(publisher.records) < 2:
                        await asyncio.sleep(0.01)

    asyncio.run(go())
    assert "initial Graph catch-up failed" in caplog.text
    assert [r.message_id for r in publisher.on("raw-mail") if isinstance(r, RawMail)] == ["<a@x>"]
    assert len(publisher.on("ingest-checkpoints")) == 1
