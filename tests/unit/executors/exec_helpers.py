"""Shared builders for the executor tests: action records and clients wired to local stand-ins."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from executors.tools.k8s_api import K8sApi, K8sConfig
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


class _AsgiResponse:
    """What the official client reads of a response: its ``RESTResponse`` and, as ``.response``, aiohttp's."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.response = self
        self.status = response.status_code
        self.reason = response.reason_phrase
        self.data: bytes | None = None

    async def read(self) -> bytes:
        self.data = self._response.content
        return self.data

    def release(self) -> None:
        pass

    @property
    def headers(self) -> httpx.Headers:
        return self._response.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self._response.headers.get(name, default)


class AsgiRest:
    """The official client's REST layer, answered by an in-process ASGI stand-in instead of aiohttp and a socket.

    Everything above it is the real ``kubernetes.aio`` client: the generated API methods, their query
    parameters and content types, authentication headers, deserialisation and ``ApiException``.
    """

    def __init__(self, app: Any) -> None:
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))

    async def request(self, method: str, url: str, headers: dict[str, str] | None = None, body: Any = None,
                      post_params: Any = None, _request_timeout: Any = None) -> _AsgiResponse:
        content = body if body is None or isinstance(body, str | bytes) else json.dumps(body)
        return _AsgiResponse(await self.client.request(method, url, headers=headers, content=content))

    async def close(self) -> None:
        await self.client.aclose()


def k8s_api(app: Any, token: str = "admin-token") -> K8sApi:
    """The real client (``kubernetes.aio``) talking to a stand-in app in-process."""
    return K8sApi.from_config(K8sConfig(server="https://k8s.test:6443", token=SecretStr(token)),
                              transport=lambda configuration: AsgiRest(app))
