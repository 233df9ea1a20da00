"""netprobe: DNS, TCP and HTTP checks against loopback, and which targets are accepted at all."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from executors.evidence.base import Observation
from executors.evidence.netprobe import Dns, Http, NetprobeConfig, Tcp
from schemas.records import EvidenceStatus
from tests.unit.executors.evidence.helpers import NOW, mock_client, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tcp_connect_to_a_listening_port_and_to_a_closed_one() -> None:
    closed = free_port()

    async def go() -> tuple[Observation, Observation]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tool = Tcp(NetprobeConfig(targets={"vminsert": f"127.0.0.1:{port}"}))
        try:
            return (await tool.observe_query("vminsert", now=NOW),
                    await tool.observe_query(f"127.0.0.1:{closed}", now=NOW))
        finally:
            server.close()
            await server.wait_closed()

    up, down = run(go)
    assert up.values[""] == 1.0 and "latency_ms" in up.values
    assert up.evidence.query.startswith("CONNECT 127.0.0.1:")
    assert down.values[""] == 0.0 and "failed" in down.evidence.summary


def test_dns_resolves_localhost_and_reports_an_unknown_name() -> None:
    tool = Dns(NetprobeConfig(targets={"local": "localhost:9090"}))
    ok = run(lambda: tool.observe_query("local", now=NOW))
    assert ok.values[""] >= 1.0 and ("127.0.0.1" in ok.evidence.summary or "::1" in ok.evidence.summary)
    missing = run(lambda: tool.observe_query("no-such-host.invalid:53", now=NOW))
    assert missing.evidence.status is EvidenceStatus.NO_DATA and missing.values[""] == 0.0


def test_http_checks_only_configured_urls() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(503, text="not ready")

    async def go() -> tuple[Observation, Observation]:
        async with mock_client(handler) as client:
            tool = Http(NetprobeConfig(targets={"vmselect": "http://vmselect.test:8481/health"}), client)
            return (await tool.observe_query("vmselect", now=NOW),
                    await tool.observe_query("http://evil.test/", now=NOW))

    ok, refused = run(go)
    assert seen == ["http://vmselect.test:8481/health"]
    assert ok.values[""] == 0.0 and ok.values["status"] == 503.0
    assert refused.evidence.status is EvidenceStatus.ERROR


@pytest.mark.parametrize("target", ["../../etc", "x\n:80", "a" * 10_000 + ":80", "host:99999", "h;rm -rf /:22",
                                    "unknown-name"])
def test_bad_targets_are_refused(target: str) -> None:
    obs = run(lambda: Tcp(NetprobeConfig()).observe({"target": target}, now=NOW))
    assert obs.evidence.status is EvidenceStatus.ERROR


def test_misconfigured_target_fails_at_start_up() -> None:
    with pytest.raises(ValueError):
        Tcp(NetprobeConfig(targets={"x": "http://user:pw@host/"}))
