"""Outbound HTTP clients: one factory, so every call honours the proxy and the host allow-list."""

from __future__ import annotations

import fnmatch

import httpx
from pydantic import BaseModel, Field


class HttpSettings(BaseModel):
    #: e.g. http://proxy.corp:3128; applies to every outbound call rcaflow makes.
    proxy: str | None = None
    #: Hosts rcaflow may call (fnmatch patterns such as "*.aliyuncs.com"); empty means no restriction.
    allowed_hosts: list[str] = Field(default_factory=list)
    timeout_s: float = 30.0


class HostNotAllowedError(httpx.RequestError):
    """The configured allow-list does not include this host; the request was never sent."""


def make_async_client(settings: HttpSettings, *, base_url: str = "") -> httpx.AsyncClient:
    allowed = [pattern.lower() for pattern in settings.allowed_hosts]

    async def check_host(request: httpx.Request) -> None:
        host = (request.url.host or "").lower()
        if allowed and not any(fnmatch.fnmatchcase(host, pattern) for pattern in allowed):
            raise HostNotAllowedError(f"outbound call to {host!r} is not in http.allowed_hosts", request=request)

    return httpx.AsyncClient(
        base_url=base_url,
        proxy=settings.proxy,
        timeout=settings.timeout_s,
        event_hooks={"request": [check_host]},
        trust_env=False,
    )
