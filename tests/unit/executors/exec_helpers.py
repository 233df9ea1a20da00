"""Shared builders for the executor tests: action records and clients wired to local stand-ins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from executors.tools.k8s_api import K8sApi
from schemas.records import ActionEvent, ActionState, Risk

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


def action(
    name: str,
    params: dict[str, str],
    *,
    state: ActionState = ActionState.APPROVED,
    risk: Risk = Risk.LOW,
    action_id: str = "act-1",
    **extra: Any,
) -> ActionEvent:
    tool, _, operation = name.partition(".")
    return ActionEvent(
        tenant="acme",
        action_id=action_id,
        incident_id="inc-1",
        alert_class="vmalert_reload_failure",
        name=f"test {name}",
        tool=tool,
        operation=operation,
        params=params,
        risk=risk,
        state=state,
        at=NOW,
        **extra,
    )


def asgi_client(app: Any, base_url: str = "http://standin.test") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def k8s_api(app: Any, token: str = "admin-token") -> K8sApi:
    return K8sApi(asgi_client(app, "https://k8s.test:6443"), token=SecretStr(token))
