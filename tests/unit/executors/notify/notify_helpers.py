"""Fixed inputs for the message golden files, and the two channel stand-ins (Slack's lives in tests/support)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from schemas.records import (
    ActionEvent,
    ActionState,
    AlertEvent,
    Engine,
    Evidence,
    EvidenceStatus,
    Incident,
    RcaResult,
    Risk,
)
from tests.support.slack import BOT_TOKEN, SlackApiStandIn

__all__ = ["BOT_TOKEN", "SlackApiStandIn"]

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ROBOT_TOKEN = "robot-access-token"
ROBOT_SECRET = "SECrobotsecret"


def rca(diagnosis: str = "etcd fsync latency is high on member etcd-0") -> RcaResult:
    event = AlertEvent(
        tenant="acme", event_id="ev-1", fingerprint="fp-1", alert="EtcdHighFsyncDurations", severity="P2",
        alert_class="etcd_latency", labels={"cluster": "HK-DCE5-PLATFORM", "namespace": "kube-system"},
        received_at=NOW - timedelta(minutes=5), parser="test",
    )
    incident = Incident(tenant="acme", incident_id="inc-1", fingerprint="fp-1", alert_class="etcd_latency",
                        opened_at=NOW - timedelta(minutes=5), last_seen_at=NOW - timedelta(minutes=2), count=3,
                        last_event_id="ev-1", event=event)
    return RcaResult(
        tenant="acme", incident_id="inc-1", alert_class="etcd_latency", engine=Engine.POLICY,
        diagnosis=diagnosis, cause="slow disk on the etcd node", confidence=0.8,
        evidence=[Evidence(tool="prom", operation="query", query="etcd_disk_wal_fsync_duration_seconds",
                           status=EvidenceStatus.SUCCESS, summary="p99 fsync 0.73s")],
        produced_at=NOW - timedelta(minutes=1), incident=incident,
    )


def actions() -> list[ActionEvent]:
    base: dict[str, Any] = {"tenant": "acme", "incident_id": "inc-1", "alert_class": "etcd_latency",
                            "dry_run": True, "at": NOW - timedelta(minutes=1)}
    return [
        ActionEvent(**base, action_id="act-1", name="restart etcd member", tool="k8s", operation="rollout_restart",
                    params={"namespace": "kube-system", "kind": "statefulset", "name": "etcd"}, risk=Risk.HIGH,
                    state=ActionState.AWAITING_APPROVAL, reason="fsync p99 above 500ms for 10m",
                    expires_at=NOW + timedelta(minutes=30)),
        ActionEvent(**base, action_id="act-2", name="collect diagnostics", tool="diagnostics", operation="collect",
                    params={"namespace": "kube-system", "workload": "etcd"}, risk=Risk.READ,
                    state=ActionState.SUCCEEDED, result="3 pods, 0 restarts"),
    ]


@dataclass
class DingTalkRobotStandIn:
    """A custom robot: checks ``timestamp``/``sign`` (1 h window) and allows 20 messages per minute.

    Its minute is measured on ``clock`` (seconds), the same clock the sender's limiter uses.
    """

    clock: Any
    secret: str = ROBOT_SECRET
    limit: int = 20
    received: list[dict[str, Any]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    refused: int = 0

    async def send(self, request: Request) -> Response:
        q = request.query_params
        if q.get("access_token") != ROBOT_TOKEN:
            return JSONResponse({"errcode": 300001, "errmsg": "token is not exist"})
        ts, sign = q.get("timestamp", ""), q.get("sign", "")
        key = self.secret.encode()
        expected = base64.b64encode(hmac.new(key, f"{ts}\n".encode() + key, hashlib.sha256).digest()).decode()
        if not ts.isdigit() or abs(int(ts) - self.clock() * 1000) > 3600_000 or sign != expected:
            return JSONResponse({"errcode": 310000, "errmsg": "sign not match"})
        now = self.clock()
        if len([t for t in self.sent_at if now - t < 60]) >= self.limit:
            self.refused += 1
            return JSONResponse({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
        self.sent_at.append(now)
        self.received.append(json.loads(await request.body()))
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/robot/send", self.send, methods=["POST"])])
