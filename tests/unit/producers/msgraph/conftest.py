"""Shared pieces of the Graph producer tests: the stand-in, a client on it, a recording publisher."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
import pytest

from producers.msgraph import GraphClient, MailboxConfig, MsgraphConfig, RetryPolicy
from producers.publisher import Delivery
from schemas.records import Checkpoint, Record
from schemas.topics import TopicSpec
from tests.unit.producers.msgraph.standin import GraphStandIn

GRAPH = "https://graph.test/v1.0"
USER = "alerts@contoso.com"
STATE = "s3cret-client-state-0001"
SAMPLES = Path(__file__).resolve().parents[4] / "samples"


class RecordingPublisher:
    """The Publisher seam, in memory: what a broker would have acked, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, Record]] = []

    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery:
        self.records.append((spec.name, key, record))
        return Delivery(spec.name, 0, len(self.records) - 1)

    async def close(self) -> None:
        return None

    def on(self, topic: str) -> list[Record]:
        return [r for t, _, r in self.records if t == topic]


class MemoryCheckpoints:
    """The CheckpointSource seam over what a RecordingPublisher holds (as Kafka would after a restart)."""

    def __init__(self, publisher: RecordingPublisher) -> None:
        self._publisher = publisher

    def load(self, mailbox: str) -> Checkpoint | None:
        found = [r for t, k, r in self._publisher.records if t == "ingest-checkpoints" and k == mailbox]
        last = found[-1] if found else None
        return last if isinstance(last, Checkpoint) else None

    def message_ids_since(self, tenant: str, mailbox: str, since: datetime) -> list[str]:
        return [r.message_id for r in self._publisher.on("raw-mail")  # type: ignore[attr-defined]
                if r.mailbox == mailbox and r.tenant == tenant]  # type: ignore[attr-defined]


def sample_mail(name: str = "etcd_latency.eml") -> bytes:
    return (SAMPLES / name).read_bytes()


def mail(message_id: str, subject: str = "Control Cluster Details") -> bytes:
    return (
        f"Message-ID: {message_id}\r\nFrom: Insight <insight@dce.example>\r\nTo: {USER}\r\n"
        f"Subject: {subject}\r\nDate: Wed, 25 Nov 2026 12:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n"
        "alert body\r\n"
    ).encode()


def make_config(**overrides: object) -> MsgraphConfig:
    mailbox = MailboxConfig(user=USER, tenant="acme", client_state=STATE)  # type: ignore[arg-type]
    base: dict[str, object] = {
        "directory_id": "contoso-directory",
        "client_id": "app-client-id",
        "client_secret": "app-client-secret",
        "graph_url": GRAPH,
        "notification_url": "https://rcaflow.example/msgraph/webhook",
        "mailboxes": (mailbox,),
        "retry": RetryPolicy(max_attempts=4, base_seconds=0.5, cap_seconds=4.0),
    }
    base.update(overrides)
    return MsgraphConfig.model_validate(base)


class Sleeps:
    """Records requested delays instead of waiting, so retry tests are exact and instant."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def standin() -> GraphStandIn:
    return GraphStandIn()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


class StandInTokens:
    """The TokenProvider seam minting tokens at the stand-in (msal itself is tested over TLS separately)."""

    def __init__(self, standin: GraphStandIn) -> None:
        self._standin = standin
        self._token: str | None = None
        self.refreshes = 0

    async def token(self, *, refresh: bool = False) -> str:
        if self._token is None or refresh:
            self.refreshes += int(refresh)
            self._token = self._standin.issue_token()
        return self._token


def graph_client(
    standin: GraphStandIn, sleeps: Sleeps, http: httpx.AsyncClient, retry: RetryPolicy | None = None
) -> GraphClient:
    return GraphClient(
        http, StandInTokens(standin), base_url=GRAPH,
        retry=retry or RetryPolicy(max_attempts=4, base_seconds=0.5, cap_seconds=4.0),
        sleep=sleeps, rand=lambda: 0.5,
    )


def asgi_http(standin: GraphStandIn) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=standin.app()), base_url="https://graph.test")

