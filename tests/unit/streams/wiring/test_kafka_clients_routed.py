"""Every Kafka client rcaflow builds sends librdkafka's lines through logging: none reach stderr raw.

Raw lines look like ``%3|1733...|FAIL|rdkafka#consumer-1| [thrd:...]: ... Connection refused``, one per
reconnect, from librdkafka's own threads. Each component here is pointed at a loopback port nothing listens on
and must fail with its own clear error while stderr (captured at the file descriptor) holds no such line. The
source check finds a client built without the factory (``producers.kafka_clients``).
"""

from __future__ import annotations

import ast
import asyncio
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaException

from producers.imap.errors import CheckpointError
from producers.imap.state import KafkaCheckpointReader
from schemas.codec import make_codec
from streams.api.actions_view import ActionsFeed, InMemoryPendingActions
from streams.api.claims import ApprovalsFeed, SharedClaims
from streams.api.incidents_view import IncidentsFeed, IncidentsView
from streams.ops.cleanup import delete_prefixed_topics
from streams.ops.demo import Follower
from streams.ops.replay import ReplayError, Window, copy_window
from streams.wiring.consumer_lag import ConsumerLag

ROOT = Path(__file__).resolve().parents[4]
#: Where a client may be built directly: the factory itself, the start-up check (it reads librdkafka's lines
#: itself to tell a refused login from an absent broker) and the embedded broker's probe (``log_level: 0``).
BUILT_DIRECTLY = {"producers/kafka_clients.py", "streams/wiring/kafka_client.py", "streams/broker/base.py"}
CLIENT_CLASSES = {"Consumer", "Producer", "AdminClient", "SerializingProducer", "DeserializingConsumer"}


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _raised(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test looks at which error each component raised
        return exc
    return None


def test_no_component_prints_raw_librdkafka_lines_against_an_absent_broker(capfd: pytest.CaptureFixture[str]) -> None:
    where = _closed_port()
    codec = make_codec(None)

    def lag() -> None:
        collector = ConsumerLag({"bootstrap.servers": where}, ["g"], every_s=60)
        collector.refresh()
        collector.stop()

    def claims() -> None:
        feed = ApprovalsFeed(bootstrap=where, codec=codec, claims=SharedClaims())
        asyncio.run(asyncio.wait_for(feed.run(), 30))

    components: dict[str, Callable[[], object]] = {
        "incidents feed": lambda: asyncio.run(IncidentsFeed(bootstrap=where, codec=codec, view=IncidentsView()).run()),
        "actions feed": lambda: asyncio.run(
            ActionsFeed(bootstrap=where, codec=codec, pending=InMemoryPendingActions()).run()),
        "approvals feed": claims,
        "imap checkpoint reader": lambda: KafkaCheckpointReader(where, codec, timeout_seconds=3).load("m"),
        "replay copier": lambda: copy_window(where, "raw-mail", "shadow.raw-mail", Window(limit=1), label="raw-mail",
                                             timeout=3),
        "demo follower": lambda: Follower(bootstrap=where, codec=codec, prefix="rcaflow-demo-00000000."),
        "cleanup admin": lambda: delete_prefixed_topics({"bootstrap.servers": where}, "rcaflow-demo-00000000.",
                                                        what="demo"),
        "consumer lag admin": lag,
    }
    outcomes: dict[str, BaseException | None] = {}
    threads = [threading.Thread(target=lambda n=name, c=call: outcomes.__setitem__(n, _raised(c)))  # type: ignore[misc]
               for name, call in components.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(outcomes) == len(components), f"still running: {set(components) - set(outcomes)}"

    # Each says in its own terms that it could not reach the cluster.
    assert isinstance(outcomes["incidents feed"], KafkaException), outcomes
    assert isinstance(outcomes["actions feed"], KafkaException), outcomes
    assert isinstance(outcomes["approvals feed"], KafkaException), outcomes
    assert isinstance(outcomes["imap checkpoint reader"], CheckpointError), outcomes
    assert isinstance(outcomes["replay copier"], ReplayError), outcomes
    assert isinstance(outcomes["demo follower"], KafkaException), outcomes
    assert outcomes["cleanup admin"] is None and outcomes["consumer lag admin"] is None, outcomes  # logged, not raised
    err = capfd.readouterr().err
    raw = [line for line in err.splitlines() if line.startswith("%") and "|rdkafka#" in line]
    assert not raw, "raw librdkafka lines on stderr:\n" + "\n".join(raw[:10])


def _built_clients(path: Path) -> list[tuple[int, str]]:
    """Calls of a confluent-kafka client class, under whatever local name it was imported as."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    local = set(CLIENT_CLASSES)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confluent_kafka"):
            local |= {alias.asname for alias in node.names if alias.name in CLIENT_CLASSES and alias.asname}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else (
                node.func.attr if isinstance(node.func, ast.Attribute) else "")
            if name in local:
                found.append((node.lineno, name))
    return found


def test_every_client_is_built_by_the_factory() -> None:
    stray = [f"{path.relative_to(ROOT)}:{line}: {name}(...)"
             for package in ("producers", "executors", "streams")
             for path in sorted((ROOT / package).rglob("*.py"))
             if str(path.relative_to(ROOT)) not in BUILT_DIRECTLY
             for line, name in _built_clients(path)]
    assert not stray, "build Kafka clients with producers.kafka_clients.new_consumer/new_producer/new_admin:\n" + \
        "\n".join(stray)
