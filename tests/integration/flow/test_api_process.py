"""The API process as deployed: core routes, /tools, approval callbacks, readiness after the actions view."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from schemas.codec import make_codec
from schemas.records import DeadLetter
from schemas.topics import DEAD_LETTER
from streams.api.app import TenantAuth
from streams.api.process import build_api
from streams.settings import ApprovalSettings, KafkaSettings, SecuritySettings, Settings
from streams.wiring.runtime import build_stages
from streams.wiring.topics_admin import ensure_topics
from tests.integration.flow.helpers import TopicReader
from tests.support.approval_keys import APPROVAL_KEY


def test_api_process_serves_tools_and_approvals_once_its_view_has_caught_up(
    broker: object, topic_prefix: str
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    ensure_topics(bootstrap, topic_prefix)
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka=KafkaSettings(topic_prefix=topic_prefix),
        approvals=ApprovalSettings(slack_signing_secret=SecretStr("8f742231b10e8888abcd99yyyzzz85a5"),
                                   approvers={"acme": ["slack:U1"]}),
        security=SecuritySettings(approval_key=SecretStr(APPROVAL_KEY)),  # the API signs what it publishes
    )
    auth = TenantAuth({"acme": SecretStr("s3cret")}, "default")
    app = build_api(settings, bootstrap, build_stages(settings), auth, registry=CollectorRegistry())
    headers = {"Authorization": "Bearer s3cret"}
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the actions view never caught up"
            time.sleep(0.2)
        # Readiness names every background loop of the process, each up once its view caught up.
        loops = client.get("/readyz").json()["loops"]
        assert {name: loop["state"] for name, loop in loops.items()} == {"actions-feed": "up", "approvals-feed": "up",
                                                                      "incidents-feed": "up"}
        # A write needs an approved action id; without one it is refused with the reason.
        refused = client.post("/tools/k8s", headers=headers, json={
            "operation": "delete_pod", "params": {"namespace": "kube-system", "pod": "etcd-master-1"}})
        assert refused.status_code == 403, refused.text
        assert refused.json()["reason"] == "approval_required"
        # Approval callbacks are mounted: an unsigned Slack request is refused, not unknown.
        unsigned = client.post("/approvals/slack", content=b"payload=%7B%7D",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert unsigned.status_code == 401
        # ... and kept: refused requests go to dead-letter, from where the audit agent chains them.
        letters = TopicReader(bootstrap, make_codec(None), DEAD_LETTER, topic_prefix)
        letters.wait_for(lambda rs: any(isinstance(r, DeadLetter) and r.stage == "approvals" for r in rs),
                         timeout=30, what="the refused approval request")
        letters.close()
        assert client.post("/tools/prom", json={"operation": "query", "params": {}}).status_code == 401
