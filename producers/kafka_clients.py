"""The one way an rcaflow process builds a confluent-kafka client: librdkafka's own lines go through logging.

Without a ``logger`` property librdkafka prints its lines raw on stderr (``%3|1733...|FAIL|rdkafka#consumer-1|
...``), one per reconnect: a broker that is down buries the one line that says so under hundreds. With it,
they reach the ``librdkafka`` logger, where :class:`streams.wiring.logging_setup.OncePer` lets the same line
through once per interval and the root handler formats it like ours (JSON when JSON logging is on). librdkafka
hands its lines over when the client is polled, so a client that is never polled stays silent rather than
printing raw. Here, not in ``streams``, because the producers build clients too and may not import ``streams``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

#: Where every rcaflow Kafka client sends librdkafka's log lines (``logger`` client property).
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")

__all__ = ["LIBRDKAFKA_LOG", "new_admin", "new_consumer", "new_producer", "routed"]


def routed(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with librdkafka's lines sent to :data:`LIBRDKAFKA_LOG`, unless the caller routes them itself
    (the start-up check watches them)."""
    return {"logger": LIBRDKAFKA_LOG, **config}


def new_consumer(config: Mapping[str, Any]) -> Consumer:
    """A consumer whose librdkafka lines go through logging."""
    return Consumer(routed(config))


def new_producer(config: Mapping[str, Any]) -> Producer:
    """A producer whose librdkafka lines go through logging."""
    return Producer(routed(config))


def new_admin(config: Mapping[str, Any]) -> AdminClient:
    """An admin client whose librdkafka lines go through logging."""
    return AdminClient(routed(config))
