"""k8s tools over real HTTP: a local Kubernetes API stand-in served by uvicorn on loopback.

The same stand-in the unit tests use in-process, here behind a socket, reached
through ``K8sApi.from_config`` and a kubeconfig read by the Kubernetes SDK, as
the executor process would in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from executors import ToolRegistry, execute
from executors.tools.k8s_api import K8sApi, K8sConfig, load_kubeconfig
from schemas.records import ActionEvent, ActionState, Risk
from tests.support.loopback import serve
from tests.unit.executors.k8s_standin import K8sStandIn

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def cluster() -> Iterator[tuple[K8sStandIn, str]]:
    standin = K8sStandIn()
    standin.add_workload("insight-system", "deployments", "vmalert", replicas=2)
    standin.add_pod("insight-system", "vmalert-7d9f-abcde")
    with serve(standin.app(), "k8s-standin") as url:
        yield standin, url


def act(name: str, params: dict[str, str], action_id: str = "act-1") -> ActionEvent:
    tool, _, operation = name.partition(".")
    return ActionEvent(tenant="acme", action_id=action_id, incident_id="inc-1", alert_class="vmalert_reload_failure",
                       name=name, tool=tool, operation=operation, params=params, risk=Risk.LOW,
                       state=ActionState.APPROVED, at=NOW)


RESTART = {"namespace": "insight-system", "kind": "deployment", "name": "vmalert"}


def test_restart_scale_and_delete_over_http(cluster: tuple[K8sStandIn, str]) -> None:
    standin, url = cluster

    async def go() -> list[str]:
        api = K8sApi.from_config(K8sConfig(server=url, token=SecretStr("admin-token")))
        registry = ToolRegistry({"k8s": api})
        outputs = []
        try:
            for name, params, dry in [
                ("k8s.rollout_restart", RESTART, True),
                ("k8s.rollout_restart", RESTART, False),
                ("k8s.scale", {"namespace": "insight-system", "kind": "deployment", "name": "vmalert",
                               "replicas": "3"}, False),
                ("k8s.delete_pod", {"namespace": "insight-system", "pod": "vmalert-7d9f-abcde"}, False),
                ("k8s.delete_pod", {"namespace": "insight-system", "pod": "vmalert-7d9f-abcde"}, False),
            ]:
                outcome = await execute(act(name, params), registry=registry, dry_run=dry, now=NOW)
                outputs.append(f"{outcome.state.value}: {outcome.output}")
        finally:
            await api.aclose()
        return outputs

    outputs = asyncio.run(go())
    assert outputs[0].startswith("succeeded: server-side dry run accepted")
    assert outputs[1].startswith("succeeded: restart deployment insight-system/vmalert")
    assert outputs[2] == "succeeded: scale deployment insight-system/vmalert from 2 to 3 replicas"
    assert outputs[3].startswith("succeeded: delete pod insight-system/vmalert-7d9f-abcde")
    assert outputs[4].startswith("failed: k8s DELETE") and "404 NotFound" in outputs[4]
    deployment = standin.workloads[("insight-system", "deployments", "vmalert")]
    # Like the API server: the restart and the scale each bumped the generation.
    assert deployment["spec"]["replicas"] == 3 and deployment["metadata"]["generation"] == 3


def test_kubeconfig_read_by_the_sdk_reaches_the_cluster(cluster: tuple[K8sStandIn, str], tmp_path: Path) -> None:
    _, url = cluster
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": url}}],
        "users": [{"name": "viewer", "user": {"token": "viewer-token"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "viewer"}}],
    }))
    config = load_kubeconfig(str(kubeconfig))
    assert config.server == url and config.token is not None
    assert "viewer-token" not in repr(config)

    async def go() -> str:
        api = K8sApi.from_config(config)
        try:
            outcome = await execute(act("k8s.delete_pod", {"namespace": "insight-system", "pod": "vmalert-7d9f-abcde"}),
                                    registry=ToolRegistry({"k8s": api}), dry_run=False, now=NOW)
        finally:
            await api.aclose()
        return f"{outcome.error_type}: {outcome.output}"

    assert asyncio.run(go()).startswith("ForbiddenError: k8s DELETE /api/v1/namespaces/insight-system/pods/")
