"""netprobe.dns / tcp / http: is the thing reachable from here, and how fast.

Targets are either NAMES of configured endpoints or validated ``host:port``
pairs; an HTTP check only ever GETs a configured URL, never one from an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Mapping
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from executors.base import ActionSpec
from executors.errors import InvalidParamsError, ToolNotConfiguredError, UnavailableError
from executors.evidence.base import EvidenceContext, EvidenceTool, Finding, RequestLog
from executors.params import EndpointName, Params
from executors.tools._http import safe_base_url
from schemas.records import Risk

_HOST_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*\.?$")
_IPV4_RE = re.compile(r"^(\d{1,3}\.){3}\d{1,3}$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")
MAX_ADDRESSES = 8


def _host(value: str) -> str:
    if len(value) > 253 or not (_HOSTNAME_RE.fullmatch(value) or (_IPV6_RE.fullmatch(value) and ":" in value)):
        raise ValueError("must be a hostname or an IP address")
    if _IPV4_RE.fullmatch(value) and any(int(p) > 255 for p in value.split(".")):
        raise ValueError("must be a hostname or an IP address")
    return value


def split_host_port(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port), validated."""
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ValueError("must be host:port with a port 1-65535")
    return _host(host), int(port)


def _target(value: str) -> str:
    if re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", value):
        return value  # a configured endpoint name
    split_host_port(value)
    return value


class NetprobeConfig(BaseModel):
    """Named targets: ``host:port`` for dns/tcp, ``http(s)://…`` URLs for http (and their host for dns/tcp)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    targets: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = 5.0


class HostParams(Params):
    target: Annotated[str, AfterValidator(_target)]


class HttpParams(Params):
    target: EndpointName


class Probe(EvidenceTool[Any]):
    """Shared construction and target lookup."""

    def __init__(self, config: NetprobeConfig, client: httpx.AsyncClient | None = None) -> None:
        for name, value in config.targets.items():
            if "://" in value:
                safe_base_url(value)
            else:
                try:
                    split_host_port(value)
                except ValueError as exc:
                    raise ValueError(f"netprobe target {name!r}: {exc}") from None
        self.config = config
        self.client = client

    def parse_query(self, query: str) -> dict[str, str]:
        text = query.strip().removeprefix("target=")
        if not text or " " in text:
            raise InvalidParamsError("query must be one target (a configured name or host:port)")
        return {"target": text}

    def endpoint(self, target: str) -> tuple[str, int]:
        """host and port for a name or a host:port."""
        configured: str | None = self.config.targets.get(target)
        if configured is None and ":" not in target:
            raise ToolNotConfiguredError(f"no netprobe target named {target!r}; known: "
                                         f"{', '.join(sorted(self.config.targets)) or 'none'}")
        value = configured or target
        if "://" in value:
            url = httpx.URL(value)
            return str(url.host), url.port or (443 if url.scheme == "https" else 80)
        return split_host_port(value)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


class Dns(Probe):
    spec = ActionSpec(
        name="netprobe.dns",
        description="Resolve a target's host name (getaddrinfo, as the process sees it). Value: addresses found; "
        "extras: latency_ms.",
        params=HostParams,
        risk=Risk.READ,
    )

    async def _gather(self, params: HostParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        host, port = self.endpoint(params.target)
        log.sent("RESOLVE", host)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.config.timeout_s):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return Finding(f"{host} does not resolve: {exc.strerror}", value=0.0,
                           extra={"latency_ms": _ms(started)}, no_data=True)
        except TimeoutError as exc:
            raise UnavailableError(f"resolving {host} took longer than {self.config.timeout_s:g}s") from exc
        addresses = sorted({str(info[4][0]) for info in infos})
        shown = ", ".join(addresses[:MAX_ADDRESSES]) + (" …" if len(addresses) > MAX_ADDRESSES else "")
        return Finding(f"{host} → {shown} in {_ms(started)} ms", value=float(len(addresses)),
                       extra={"latency_ms": _ms(started)})


class Tcp(Probe):
    spec = ActionSpec(
        name="netprobe.tcp",
        description="Open (and close) a TCP connection to a target. Value: 1 connected, 0 refused/unreachable; "
        "extras: latency_ms.",
        params=HostParams,
        risk=Risk.READ,
    )

    async def _gather(self, params: HostParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        host, port = self.endpoint(params.target)
        log.sent("CONNECT", f"{host}:{port}")
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.timeout_s):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return Finding(f"connect to {host}:{port}: no answer within {self.config.timeout_s:g}s (filtered?)",
                           value=0.0, extra={"latency_ms": _ms(started)})
        except OSError as exc:
            return Finding(f"connect to {host}:{port} failed: {exc.strerror or type(exc).__name__}", value=0.0,
                           extra={"latency_ms": _ms(started)})
        latency = _ms(started)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return Finding(f"connected to {host}:{port} in {latency} ms", value=1.0, extra={"latency_ms": latency})


class Http(Probe):
    spec = ActionSpec(
        name="netprobe.http",
        description="GET a configured URL (by name) and report status and latency. Value: 1 for 2xx/3xx, else 0; "
        "extras: status, latency_ms.",
        params=HttpParams,
        risk=Risk.READ,
    )

    async def _gather(self, params: HttpParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        url = self.config.targets.get(params.target)
        if url is None or "://" not in url:
            raise ToolNotConfiguredError(f"no HTTP netprobe target named {params.target!r}")
        if self.client is None:
            raise ToolNotConfiguredError("netprobe.http needs an HTTP client")
        log.sent("GET", url)
        started = time.monotonic()
        response = await self.client.get(url, timeout=self.config.timeout_s)
        latency = _ms(started)
        ok = response.status_code < 400
        return Finding(f"GET {params.target}: {response.status_code} {response.reason_phrase} in {latency} ms",
                       value=1.0 if ok else 0.0, extra={"status": float(response.status_code), "latency_ms": latency})


def probes(config: NetprobeConfig, client: httpx.AsyncClient | None = None) -> Mapping[str, Probe]:
    """The three operations by name, sharing one config."""
    return {cls.spec.name: cls(config, client) for cls in (Dns, Tcp, Http)}
