"""Reaching Kafka: a refused connection is told from an absent broker in one line, without a broker here.

The stand-ins speak only TCP: one hangs up on every connection, as a SASL or TLS listener does to a
PLAINTEXT client; the other port has nobody listening.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from streams.errors import KafkaAuthError
from streams.wiring.kafka_client import KafkaUnreachableError, check_cluster, describe


@pytest.fixture
def hangs_up() -> Iterator[str]:
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    server.close()


def _dead_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_a_listener_that_hangs_up_on_plaintext_is_a_security_mismatch(hangs_up: str) -> None:
    with pytest.raises(KafkaAuthError) as refused:
        check_cluster({"bootstrap.servers": hangs_up}, timeout=20)
    assert str(refused.value) == (
        f"kafka: {hangs_up} (PLAINTEXT) closed the connection without an answer, as a SASL or TLS listener does "
        "to a PLAINTEXT client: check kafka.security")


def test_nobody_listening_is_unreachable_and_worth_a_retry() -> None:
    where = _dead_port()
    with pytest.raises(KafkaUnreachableError) as absent:
        check_cluster({"bootstrap.servers": where}, timeout=1)
    assert absent.value.retriable and f"no broker answered at {where} (PLAINTEXT)" in str(absent.value)


def test_describe_names_the_login_but_never_the_password() -> None:
    config = {"bootstrap.servers": "k:9093", "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
              "sasl.username": "alice", "sasl.password": "pw-never-shown"}
    assert describe(config) == "k:9093 (SASL_SSL SCRAM-SHA-512 as user alice)"
