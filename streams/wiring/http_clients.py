"""Outbound HTTP clients: one factory, so every call honours the proxy and the host allow-list."""

from __future__ import annotations

import fnmatch
import ssl

import httpx

from streams.errors import StreamsError
from streams.settings import HttpSettings


class HostNotAllowedError(httpx.RequestError, StreamsError):
    """The configured allow-list does not include this host; the request was never sent.

    An ``httpx.RequestError`` first, so every client maps it as the transport failure it
    looks like from outside; a ``StreamsError`` too, so it is ours at the process boundary.
    Not retriable: the allow-list will not change between two attempts.
    """


def make_async_client(
    settings: HttpSettings,
    *,
    base_url: str = "",
    verify: ssl.SSLContext | bool = True,
    timeout_s: float | None = None,
) -> httpx.AsyncClient:
    """The one way rcaflow builds an outbound client; ``verify`` for servers with their own CA (Kubernetes)."""
    allowed = [pattern.lower() for pattern in settings.allowed_hosts]

    async def check_host(request: httpx.Request) -> None:
        host = (request.url.host or "").lower()
        if allowed and not any(fnmatch.fnmatchcase(host, pattern) for pattern in allowed):
            raise HostNotAllowedError(f"outbound call to {host!r} is not in http.allowed_hosts", request=request)

    direct = _direct_mounts(settings.no_proxy) if settings.proxy else {}
    return httpx.AsyncClient(
        base_url=base_url,
        proxy=settings.proxy,
        mounts=direct or None,
        verify=verify,
        timeout=timeout_s if timeout_s is not None else settings.timeout_s,
        event_hooks={"request": [check_host]},
        trust_env=False,
        follow_redirects=False,
    )


def _direct_mounts(patterns: list[str]) -> dict[str, httpx.AsyncBaseTransport | None]:
    """httpx mount keys that bypass the proxy: ``all://host`` or ``all://*.domain`` (httpx's own wildcard)."""
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    for pattern in patterns:
        host = pattern.strip().lower()
        if host:
            mounts[f"all://{host}"] = None
    return mounts
