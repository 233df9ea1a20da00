"""The executor's Kubernetes calls obey http.allowed_hosts, http.proxy and http.no_proxy like every other call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from executors import ExecutionOutcome, execute
from schemas.records import ActionState
from streams.settings import ExecutorSettings, Settings
from streams.wiring.http_clients import HttpSettings
from streams.wiring.tools import build_tool_registry
from tests.support.loopback import serve
from tests.unit.executors.exec_helpers import NOW, action
from tests.unit.executors.k8s_standin import K8sStandIn

SCALE = {"namespace": "insight-system", "kind": "deployment", "name": "vmalert", "replicas": "3"}


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "admin-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def _scale(settings: Settings) -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        registry = build_tool_registry(settings)
        try:
            return await execute(action("k8s.scale", SCALE), registry=registry, dry_run=False, now=NOW)
        finally:
            await registry.aclose()
    return asyncio.run(go())


class RecordingProxy:
    """A forward HTTP proxy stand-in: records each absolute-form request line and answers like the cluster would."""

    def __init__(self) -> None:
        self.request_lines: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode()
        self.request_lines.append(line)
        headers = head.split(b"\r\n")
        length = next((int(h.split(b":", 1)[1]) for h in headers if h.lower().startswith(b"content-length")), 0)
        if length:
            await reader.readexactly(length)
        body = b'{"kind":"Scale","spec":{"replicas":2},"status":{"replicas":2}}'
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        writer.close()


def _scale_through_proxy(tmp_path: Path, no_proxy: list[str]) -> tuple[ExecutionOutcome, RecordingProxy]:
    proxy = RecordingProxy()

    async def go() -> ExecutionOutcome:
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = Settings(
            executor=ExecutorSettings(kubeconfig=_kubeconfig(tmp_path, "http://k8s.test:6443"), dry_run=False),
            http=HttpSettings(proxy=f"http://127.0.0.1:{port}", no_proxy=no_proxy),
        )
        registry = build_tool_registry(settings)
        try:
            return await execute(action("k8s.scale", SCALE), registry=registry, dry_run=False, now=NOW)
        finally:
            await registry.aclose()
            server.close()
    return asyncio.run(go()), proxy


def test_a_cluster_outside_the_allow_list_is_never_called(tmp_path: Path) -> None:
    cluster = K8sStandIn()
    cluster.add_workload("insight-system", "deployments", "vmalert", replicas=2)
    with serve(cluster.app(), "k8s") as url:
        settings = Settings(executor=ExecutorSettings(kubeconfig=_kubeconfig(tmp_path, url), dry_run=False),
                            http=HttpSettings(allowed_hosts=["*.internal"]))
        outcome = _scale(settings)
    assert outcome.state is ActionState.FAILED and not outcome.retriable
    assert "'127.0.0.1' is not in http.allowed_hosts" in outcome.output
    assert cluster.writes == [] and cluster.workloads[("insight-system", "deployments", "vmalert")]["spec"][
        "replicas"] == 2


def test_an_allowed_cluster_is_reached_directly(tmp_path: Path) -> None:
    cluster = K8sStandIn()
    cluster.add_workload("insight-system", "deployments", "vmalert", replicas=2)
    with serve(cluster.app(), "k8s") as url:
        settings = Settings(executor=ExecutorSettings(kubeconfig=_kubeconfig(tmp_path, url), dry_run=False),
                            http=HttpSettings(allowed_hosts=["127.0.0.1"]))
        outcome = _scale(settings)
    assert outcome.ok, outcome.output
    assert cluster.workloads[("insight-system", "deployments", "vmalert")]["spec"]["replicas"] == 3


def test_the_cluster_is_called_through_the_configured_proxy(tmp_path: Path) -> None:
    outcome, proxy = _scale_through_proxy(tmp_path, no_proxy=[])
    assert outcome.ok, outcome.output
    assert proxy.request_lines[0].startswith(
        "GET http://k8s.test:6443/apis/apps/v1/namespaces/insight-system/deployments/vmalert/scale")
    assert any(line.startswith("PATCH http://k8s.test:6443/") for line in proxy.request_lines)


def test_no_proxy_hosts_bypass_the_proxy(tmp_path: Path) -> None:
    outcome, proxy = _scale_through_proxy(tmp_path, no_proxy=["k8s.test"])
    assert proxy.request_lines == []
    # Direct, k8s.test does not resolve here: the call fails as unreachable, and is worth retrying.
    assert outcome.state is ActionState.FAILED and outcome.retriable
    assert "cannot reach http://k8s.test:6443" in outcome.output
