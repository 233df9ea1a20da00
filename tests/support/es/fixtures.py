"""Session fixtures: one real Elasticsearch with security off, one with basic auth on (started only if used).

Imported by tests/integration/conftest.py so every integration folder shares the same nodes.
Without Java the tests skip, except in CI (``CI=true``), where that is a failure: `make test`
installs Java 17 and the distribution (.ci/es-deps.sh).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.es.server import EsNode, EsStartError, java_home


def _start(security: bool) -> EsNode:
    try:
        java_home()
    except EsStartError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        return EsNode(security=security).start()
    except EsStartError as exc:
        pytest.fail(f"cannot start the test Elasticsearch: {exc}")


@pytest.fixture(scope="session")
def elasticsearch_node() -> Iterator[EsNode]:
    """A single-node Elasticsearch on a free loopback port, security off."""
    node = _start(security=False)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def elasticsearch_secure_node() -> Iterator[EsNode]:
    """The same with basic auth on (file-realm superuser ``node.username`` / ``node.password``)."""
    node = _start(security=True)
    try:
        yield node
    finally:
        node.stop()
