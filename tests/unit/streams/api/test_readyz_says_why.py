"""/readyz answers 503 with why: which loop, in which state, and what it waits for or what failed.

`rcaflow api` as build_api composes it, pointed at a loopback port where no broker listens: first its feeds
are still reading their topics, then they fail and are restarted; the body says so in each phase.
"""

from __future__ import annotations

import socket
import time

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from streams.api.app import TenantAuth
from streams.api.process import build_api
from streams.settings import Settings
from streams.wiring.runtime import build_stages

#: A guard against a feed that never gives up, not a timing goal.
DEADLINE_S = 90.0


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_readyz_says_which_loop_is_not_up_and_why() -> None:
    bootstrap = _closed_port()
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    app = build_api(settings, bootstrap, build_stages(settings), TenantAuth({"acme": SecretStr("s3cret")}, "default"),
                    registry=CollectorRegistry())
    with TestClient(app) as client:
        first = client.get("/readyz")
        assert first.status_code == 503
        body = first.json()
        assert body["status"] == "not ready" and {"actions-feed", "incidents-feed"} <= set(body["not_up"]), body
        # Starting: what each feed waits for.
        assert "actions-feed starting: waiting for the actions topic read to its end" in body["reason"], body
        assert body["loops"]["incidents-feed"]["reason"].startswith("waiting for the incidents, rca-result"), body

        # Then the feeds give up on the absent topics and say why, and are restarted.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            later = client.get("/readyz")
            actions = later.json()["loops"]["actions-feed"]
            if actions["state"] == "down":
                break
            assert time.monotonic() < deadline, later.json()
            time.sleep(0.2)
        assert later.status_code == 503
        assert "KafkaException" in actions["reason"] and "no metadata for topic actions" in actions["reason"], actions
        assert "actions-feed down: KafkaException" in later.json()["reason"], later.json()
