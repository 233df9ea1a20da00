"""The webhook as Graph drives it: handshake, notifications to raw-mail, lifecycle events, durability."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from producers.msgraph import FileSpool, GraphIngest, MemorySpool, Spool
from schemas.records import Checkpoint, DeadLetter, RawMail, SourceKind
from streams.api.msgraph import create_msgraph_router
from tests.unit.producers.msgraph.conftest import (
    STATE,
    USER,
    MemoryCheckpoints,
    RecordingPublisher,
    Sleeps,
    asgi_http,
    graph_client,
    mail,
    make_config,
    sample_mail,
)
from tests.unit.producers.msgraph.standin import GraphStandIn

WEBHOOK = "https://rcaflow.example/msgraph/webhook"


@dataclass
class Rig:
    standin: GraphStandIn
    ingest: GraphIngest
    publisher: RecordingPublisher
    api: httpx.AsyncClient

    async def post(self, body: dict[str, Any]) -> httpx.Response:
        return await self.api.post(WEBHOOK, json=body)

    def raw_mails(self) -> list[RawMail]:
        return [r for r in self.publisher.on("raw-mail") if isinstance(r, RawMail)]


@asynccontextmanager
async def rig(
    standin: GraphStandIn,
    *,
    spool: Spool | None = None,
    publisher: RecordingPublisher | None = None,
    initial_position: str = "new",
    restore: bool = False,
) -> AsyncIterator[Rig]:
    config = make_config(mailboxes=[{"user": USER, "tenant": "acme", "client_state": STATE,
                                     "initial_position": initial_position}])
    publisher = publisher or RecordingPublisher()
    async with asgi_http(standin) as http:
        ingest = GraphIngest(config, graph_client(standin, Sleeps(), http), publisher, spool or MemorySpool())
        if restore:
            ingest.restore(MemoryCheckpoints(publisher))
        app = FastAPI()
        app.include_router(create_msgraph_router(ingest))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEBHOOK) as api:
            yield Rig(standin, ingest, publisher, api)


SUB = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"


def created(message_id: str, state: str = STATE, sub_id: str = SUB) -> dict[str, Any]:
    return {"value": [{
        "subscriptionId": sub_id,
        "subscriptionExpirationDateTime": "2026-11-28T11:00:00Z",
        "changeType": "created",
        "resource": f"Users/1b0a2c1e-0000-4000-8000-000000000001/Messages/{message_id}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "@odata.etag": 'W/"CQAAABYAAAA"',
                         "id": message_id},
        "clientState": state,
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
    }]}


def lifecycle(event: str, sub_id: str = SUB) -> dict[str, Any]:
    return {"value": [{
        "subscriptionId": sub_id,
        "subscriptionExpirationDateTime": "2026-11-28T11:00:00Z",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "clientState": STATE,
        "lifecycleEvent": event,
    }]}


def test_validation_handshake_echoes_the_token_as_plain_text(standin: GraphStandIn) -> None:
    async def go() -> list[httpx.Response]:
        async with rig(standin) as r:
            token = "Validation: Testing client application reachability for subscription Request-Id: 4b2d"
            return [
                await r.api.post(WEBHOOK, params={"validationToken": token}),
                await r.api.get(WEBHOOK, params={"validationToken": token}),
            ]

    for response in asyncio.run(go()):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text.startswith("Validation: Testing client application reachability")


def test_created_notification_publishes_the_mime_byte_exact(standin: GraphStandIn) -> None:
    mime = sample_mail()
    mid = standin.add_message(USER, mime, "<x@dce>")

    async def go() -> tuple[int, list[RawMail], list[tuple[str, str, Any]]]:
        async with rig(standin) as r:
            response = await r.post(created(mid))
            return response.status_code, r.raw_mails(), r.publisher.records

    status, mails, records = asyncio.run(go())
    assert status == 202
    assert len(mails) == 1
    raw = mails[0]
    assert raw.raw == mime
    assert raw.source is SourceKind.MSGRAPH
    assert raw.tenant == "acme"
    assert raw.mailbox == f"msgraph://{USER}/inbox"
    assert raw.message_id.startswith("<") and raw.message_id.endswith(">")
    assert records[0][1] == f"acme:{raw.message_id}"
    assert raw.subject


def test_the_same_mail_is_published_once(standin: GraphStandIn) -> None:
    first = standin.add_message(USER, mail("<dup@x>"), "<dup@x>")
    # The same RFC 822 message delivered twice (e.g. copied back into the folder): a new Graph id.
    second = standin.add_message(USER, mail("<dup@x>"), "<dup@x>")

    async def go() -> list[RawMail]:
        async with rig(standin) as r:
            for mid in (first, first, second):
                assert (await r.post(created(mid))).status_code == 202
            return r.raw_mails()

    assert [m.message_id for m in asyncio.run(go())] == ["<dup@x>"]


def test_wrong_client_state_is_refused_and_nothing_is_fetched(standin: GraphStandIn) -> None:
    mid = standin.add_message(USER, mail("<a@x>"), "<a@x>")

    async def go() -> tuple[int, int, list[RawMail]]:
        async with rig(standin) as r:
            forged = await r.post(created(mid, state="not-the-secret-0000000"))
            malformed = await r.api.post(WEBHOOK, content=b"{not json")
            return forged.status_code, malformed.status_code, r.raw_mails()

    forged, malformed, mails = asyncio.run(go())
    assert forged == 403
    assert malformed == 400
    assert mails == []
    assert standin.requests == []


def test_missed_runs_a_delta_catch_up_that_publishes_exactly_the_missing_mails(standin: GraphStandIn) -> None:
    old = [standin.add_message(USER, mail(f"<old{i}@x>"), f"<old{i}@x>") for i in range(3)]

    async def go() -> tuple[list[str], list[Checkpoint]]:
        async with rig(standin) as r:
            # First start: initial_position=new records where the folder is, publishes nothing.
            assert await r.ingest.catch_up_all() == 0
            new = [standin.add_message(USER, mail(f"<new{i}@x>"), f"<new{i}@x>") for i in range(5)]
            assert (await r.post(created(new[1]))).status_code == 202  # the only notification that got through
            assert (await r.post(lifecycle("missed"))).status_code == 202
            checkpoints = [c for c in r.publisher.on("ingest-checkpoints") if isinstance(c, Checkpoint)]
            return [m.message_id for m in r.raw_mails()], checkpoints

    published, checkpoints = asyncio.run(go())
    assert old  # present in the folder, never published
    assert published == ["<new1@x>", "<new0@x>", "<new2@x>", "<new3@x>", "<new4@x>"]
    assert len(checkpoints) == 2
    assert all(c.kind is SourceKind.MSGRAPH and c.mailbox == f"msgraph://{USER}/inbox" for c in checkpoints)
    assert checkpoints[-1].delta_link is not None and checkpoints[-1].delta_link.endswith("$deltatoken=8")


def test_initial_position_all_publishes_what_is_already_there(standin: GraphStandIn) -> None:
    for i in range(3):
        standin.add_message(USER, mail(f"<m{i}@x>"), f"<m{i}@x>")

    async def go() -> list[str]:
        async with rig(standin, initial_position="all") as r:
            await r.ingest.catch_up_all()
            return [m.message_id for m in r.raw_mails()]

    assert asyncio.run(go()) == ["<m0@x>", "<m1@x>", "<m2@x>"]


def test_reauthorization_required_reauthorizes(standin: GraphStandIn) -> None:
    async def go() -> str:
        async with rig(standin) as r:
            sub = await r.ingest.subscriptions.ensure(r.ingest.mailbox(f"msgraph://{USER}/inbox"))
            assert (await r.post(lifecycle("reauthorizationRequired", sub.id))).status_code == 202
            return sub.id

    assert standin.reauthorized == [asyncio.run(go())]


def test_subscription_removed_recreates_it_and_catches_up(standin: GraphStandIn) -> None:
    async def go() -> tuple[str, list[str]]:
        async with rig(standin) as r:
            await r.ingest.catch_up_all()
            sub = await r.ingest.subscriptions.ensure(r.ingest.mailbox(f"msgraph://{USER}/inbox"))
            standin.expire_subscription(sub.id)
            standin.add_message(USER, mail("<while-removed@x>"), "<while-removed@x>")
            assert (await r.post(lifecycle("subscriptionRemoved", sub.id))).status_code == 202
            return sub.id, [m.message_id for m in r.raw_mails()]

    old_id, published = asyncio.run(go())
    assert published == ["<while-removed@x>"]
    assert len(standin.subscriptions) == 1 and old_id not in standin.subscriptions


def test_expired_delta_token_resyncs_without_duplicates(standin: GraphStandIn) -> None:
    async def go() -> list[str]:
        async with rig(standin) as r:
            standin.add_message(USER, mail("<seen@x>"), "<seen@x>")
            first = standin.add_message(USER, mail("<a@x>"), "<a@x>")
            await r.ingest.catch_up_all()
            await r.post(created(first))
            standin.add_message(USER, mail("<b@x>"), "<b@x>")
            standin.expired_delta_tokens.add("2")
            await r.post(lifecycle("missed"))
            return [m.message_id for m in r.raw_mails()]

    # "<seen@x>" predates the checkpoint by less than a day, so a resync publishes it: at-least-once, once.
    assert asyncio.run(go()) == ["<a@x>", "<seen@x>", "<b@x>"]


def test_unpersistable_notification_is_not_acknowledged(standin: GraphStandIn, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool = FileSpool(spool_dir)
    shutil.rmtree(spool_dir)
    spool_dir.write_text("not a directory")
    mid = standin.add_message(USER, mail("<a@x>"), "<a@x>")

    async def go() -> httpx.Response:
        async with rig(standin, spool=spool) as r:
            return await r.post(created(mid))

    response = asyncio.run(go())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


def test_spooled_notification_survives_a_restart(standin: GraphStandIn, tmp_path: Path) -> None:
    mid = standin.add_message(USER, sample_mail("log_flood.eml"), "<flood@x>")
    standin.fail_next("GET", f"/users/{USER}/messages/{mid}/$value", 503, times=4)
    publisher = RecordingPublisher()

    async def first_run() -> int:
        async with rig(standin, spool=FileSpool(tmp_path), publisher=publisher) as r:
            return (await r.post(created(mid))).status_code

    async def second_run() -> int:
        async with rig(standin, spool=FileSpool(tmp_path), publisher=publisher) as r:
            return await r.ingest.drain()

    assert asyncio.run(first_run()) == 202
    assert publisher.on("raw-mail") == []
    assert len(list(tmp_path.glob("*.json"))) == 1  # Graph kept failing: the notification waits on disk
    assert asyncio.run(second_run()) == 1
    mails = [r for r in publisher.on("raw-mail") if isinstance(r, RawMail)]
    assert [m.raw for m in mails] == [sample_mail("log_flood.eml")]
    assert list(tmp_path.glob("*.json")) == []


def test_restart_resumes_from_the_checkpoint_and_remembers_published_mails(standin: GraphStandIn) -> None:
    publisher = RecordingPublisher()
    standin.add_message(USER, mail("<before@x>"), "<before@x>")

    async def first_run() -> None:
        async with rig(standin, publisher=publisher) as r:
            await r.ingest.catch_up_all()
            mid = standin.add_message(USER, mail("<one@x>"), "<one@x>")
            await r.post(created(mid))

    async def second_run() -> list[str]:
        async with rig(standin, publisher=publisher, restore=True) as r:
            standin.add_message(USER, mail("<two@x>"), "<two@x>")
            # The same mail again under a new Graph id must not be republished after the restart.
            again = standin.add_message(USER, mail("<one@x>"), "<one@x>")
            await r.post(created(again))
            await r.post(lifecycle("missed"))
            return [m.message_id for m in r.raw_mails()]

    asyncio.run(first_run())
    assert asyncio.run(second_run()) == ["<one@x>", "<two@x>"]


def test_a_mail_that_can_never_be_fetched_is_kept_in_dead_letter(standin: GraphStandIn) -> None:
    mid = standin.add_message(USER, sample_mail(), "<gone@dce>")
    standin.fail_next("GET", f"/users/{USER}/messages/{mid}/$value", 400)

    async def go() -> tuple[int, list[RawMail], list[DeadLetter]]:
        async with rig(standin) as r:
            response = await r.post(created(mid))
            await r.ingest.drain()
            letters = [x for x in r.publisher.on("dead-letter") if isinstance(x, DeadLetter)]
            return response.status_code, r.raw_mails(), letters

    status, mails, letters = asyncio.run(go())
    assert status == 202
    assert mails == []
    (letter,) = letters
    assert letter.stage == "msgraph" and letter.tenant == "acme"
    assert mid.encode() in letter.payload
    assert "400" in letter.reason
