"""Delete the topics a throw-away run made under its own prefix, the stream library's internal ones included.

`demo` and `replay` write under a fresh prefix (``...demo-1a2b3c4d.``); on a real cluster those
topics, and the worker's internal topics, would pile up run after run. The changelog and input
topics start with the prefix (the app id is ``<prefix><app id>``); the decide repartition topic does
not (``decide-<prefix>rca-result-...``), so the worker's own list of topics names it. Only names that
start with the run's own prefix, or that the worker derives from it, are deleted, so a bug here can
never reach the deployment's real topics.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException

from producers.kafka_clients import new_admin
from streams.wiring.topics_admin import worker_topics

logger = logging.getLogger(__name__)

#: A run prefix is the deployment's prefix plus a label and 8 hex digits, then a dot: never empty or short.
_MIN_PREFIX = 10


def delete_prefixed_topics(client: dict[str, Any], prefix: str, *, what: str, app_id: str = "rcaflow") -> list[str]:
    """Delete every topic of the run under ``prefix`` (the worker ``<prefix><app_id>``'s internal ones included);
    returns the names deleted. Failures are logged."""
    if len(prefix) < _MIN_PREFIX or not prefix.endswith("."):
        raise ValueError(f"refusing to delete topics under the prefix {prefix!r}: not a throw-away run prefix")
    admin = new_admin(client)
    try:
        existing = admin.list_topics(timeout=10).topics
    except KafkaException as exc:
        logger.warning("%s: could not list topics to delete those under %s: %s", what, prefix, exc)
        return []
    derived = {topic.name for topic in worker_topics(prefix, app_id, 1)}
    doomed = sorted(name for name in existing if name.startswith(prefix) or name in derived)
    if not doomed:
        return []
    deleted = []
    for name, future in admin.delete_topics(doomed, operation_timeout=30).items():
        try:
            future.result()
            deleted.append(name)
        except KafkaException as exc:
            logger.warning("%s: could not delete topic %s: %s", what, name, exc)
    return sorted(deleted)
