"""Reach the Kafka cluster with the configured security, or say in one line why not.

The librdkafka properties come from :func:`streams.settings.client_config` (one place for the
bootstrap address, ``kafka.security`` and ``kafka.client``). librdkafka never gives up on a refused
login: it logs and reconnects forever, and a metadata request just times out as a "transport
failure". So every process and CLI starts with :func:`check_cluster`, which watches librdkafka's
error callback and turns a refused login or a failed TLS handshake into a
:class:`~streams.errors.KafkaAuthError` within about a second.

Every other client is built by :func:`new_consumer`, :func:`new_producer` or :func:`new_admin`
(``producers.kafka_clients``, re-exported here), which send librdkafka's lines through logging, rate-limited
(``logging_setup.OncePer``), never raw on stderr; ``tests/unit/test_kafka_clients_built_once.py`` finds any
client built another way.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._metadata import ClusterMetadata

from producers.kafka_clients import new_admin, new_consumer, new_producer  # re-exported: the one way one is built
from streams.errors import KafkaAuthError, StreamsError
from streams.settings import client_config  # re-exported: the one way a client is configured

logger = logging.getLogger(__name__)

__all__ = ["KafkaAuthError", "KafkaUnreachableError", "check_cluster", "client_config", "describe", "new_admin",
           "new_consumer", "new_producer"]

#: How long one metadata attempt waits before the error callback is looked at again.
_ATTEMPT_S = 1.0
#: librdkafka's words for a peer that hung up on a PLAINTEXT client right after connecting: the listener
#: wants SASL or TLS (Kafka closes such connections without an answer).
_HUNG_UP = "connection closed by peer"
#: librdkafka's words for an address where nothing can answer: a one-shot command stops at once on them.
_NOTHING_THERE = ("Connection refused", "Failed to resolve", "Name or service not known")
#: The longest a one-shot command (``fail_fast``) waits for a broker that neither answers nor refuses.
FAIL_FAST_S = 4.0


class KafkaUnreachableError(StreamsError):
    """No broker answered in time (down, wrong address, firewall); it may come back, so a retry can help."""

    retriable = True


def describe(config: Mapping[str, Any]) -> str:
    """``127.0.0.1:9092 (SASL_SSL SCRAM-SHA-512 as user alice)``: where and how, never the password."""
    protocol = str(config.get("security.protocol", "plaintext")).upper()
    how = protocol
    if protocol.startswith("SASL"):
        mechanism = config.get("sasl.mechanism") or config.get("sasl.mechanisms") or "GSSAPI"
        how = f"{protocol} {mechanism} as user {config.get('sasl.username') or '(none)'}"
    return f"{config.get('bootstrap.servers', '?')} ({how})"


class _ErrorWatch:
    """librdkafka's error callback and logger: keeps the first of each, so a refusal can be told from an absence.

    (A PLAINTEXT client hung up on by a SASL listener only shows in the log, never as an error.)
    """

    def __init__(self) -> None:
        self.errors: list[KafkaError] = []
        self.logs: list[str] = []

    def __call__(self, error: KafkaError) -> None:
        if len(self.errors) < 50:
            self.errors.append(error)

    def log(self, level: int, message: str, *args: object, **_: object) -> None:
        """The ``logger`` librdkafka forwards its log lines to (on poll), instead of printing them on stderr."""
        if len(self.logs) < 50:
            self.logs.append(message % args if args else message)

    def connect_failure(self) -> str | None:
        """librdkafka's words when nothing listens there (connection refused, name not resolved), else None."""
        for error in self.errors:
            text = error.str()
            if error.code() in (KafkaError._TRANSPORT, KafkaError._RESOLVE) and any(
                    word in text for word in _NOTHING_THERE):
                return _detail(text)
        return None

    def refusal(self, protocol: str) -> str | None:
        """Why the cluster refused us, when it did: a failed login, a failed TLS handshake, or a hang-up."""
        for error in self.errors:
            text = error.str()
            if error.code() == KafkaError._AUTHENTICATION:
                return f"authentication failed at {{where}}: {_detail(text)}"
            if error.code() == KafkaError._SSL or "SSL handshake failed" in text:
                return f"TLS handshake failed at {{where}}: {_detail(text)}"
        if protocol == "PLAINTEXT" and any(_HUNG_UP in line for line in self.logs):
            return ("{where} closed the connection without an answer, as a SASL or TLS listener does to a "
                    "PLAINTEXT client")
        return None


def _detail(text: str) -> str:
    """librdkafka's words without its ``sasl_ssl://host:port/bootstrap:`` prefix and ``(after 3ms in state X)``."""
    _head, sep, rest = text.partition("/bootstrap: ")
    detail = rest if sep else text
    return re.sub(r"\s*\(after \d+ms in state \w+\)$", "", detail)


def check_cluster(config: Mapping[str, Any], *, timeout: float = 15.0, fail_fast: bool = False) -> ClusterMetadata:
    """The cluster's metadata, fetched with ``config``; a refused login fails at once, not after ``timeout``.

    ``fail_fast`` (one-shot commands: stats, audit verify, topic read, replay ...): an address where nothing
    listens fails at once too, and silence after :data:`FAIL_FAST_S`. Without it (long-running processes,
    which a supervisor may restart while the broker restarts too) such an address is said once as a warning and
    waited for until ``timeout``.

    Raises :class:`KafkaAuthError` (fix ``kafka.security``; retrying cannot help) or
    :class:`KafkaUnreachableError` (nothing answered).
    """
    watch = _ErrorWatch()
    hooks: dict[str, Any] = {"error_cb": watch, "logger": watch}
    admin = AdminClient({**config, **hooks})
    protocol = str(config.get("security.protocol", "plaintext")).upper()
    if fail_fast:
        timeout = min(timeout, FAIL_FAST_S)
    deadline = time.monotonic() + timeout
    last: KafkaException | None = None
    warned = False
    while True:
        try:
            attempt = _ATTEMPT_S / 4 if fail_fast else _ATTEMPT_S
            return admin.list_topics(timeout=max(0.1, min(attempt, deadline - time.monotonic())))
        except KafkaException as exc:
            last = exc
        admin.poll(0)  # serve the error callbacks and log lines queued meanwhile
        refused = watch.refusal(protocol)
        if refused is not None:
            raise KafkaAuthError(f"kafka: {refused.format(where=describe(config))}: check kafka.security")
        nothing_there = watch.connect_failure()
        if nothing_there is not None and fail_fast:
            raise KafkaUnreachableError(f"kafka: no broker at {describe(config)} ({nothing_there}): is it running, "
                                        "and is KAFKA_BOOTSTRAP_SERVERS right?")
        if nothing_there is not None and not warned:
            logger.warning("kafka: no broker at %s (%s); waiting up to %.0f s", describe(config), nothing_there,
                           timeout)
            warned = True
        if time.monotonic() >= deadline:
            break
    raise KafkaUnreachableError(f"kafka: no broker answered at {describe(config)} within {timeout:.0f} s "
                                f"({_reason(last)}): is it running, and is KAFKA_BOOTSTRAP_SERVERS right?")


def _reason(exc: KafkaException | None) -> str:
    error = exc.args[0] if exc is not None and exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)
