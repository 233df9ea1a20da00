"""A small async Kubernetes REST client for the handful of endpoints rcaflow's actions use.

We speak the REST API with httpx instead of wrapping the sync ``kubernetes`` SDK
in threads: the client is injected (tests point it at a local stand-in), calls
are truly async, and server-side dry run is one query parameter. The SDK is
only used, optionally, to read a kubeconfig (see :func:`load_kubeconfig`).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from executors.errors import ToolNotConfiguredError, UpstreamError, error_for_status

logger = logging.getLogger(__name__)

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
#: Longest upstream message we copy into an error (and so into a record).
_MAX_STATUS_MESSAGE = 500

WORKLOAD_RESOURCES = {"deployment": "deployments", "statefulset": "statefulsets", "daemonset": "daemonsets"}


class K8sConfig(BaseModel):
    """Where the cluster is and how to authenticate; built by the composition root, never from a mail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str
    token: SecretStr | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_tls: bool = True
    timeout_s: float = 10.0
    field_manager: str = "rcaflow"

    def ssl_context(self) -> ssl.SSLContext:
        """The cluster's CA and our client certificate, if any (reads files: call at start-up)."""
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _seg(value: str) -> str:
    # Values are validated DNS-1123 names already; quoting is the second belt.
    return quote(value, safe="")


class K8sApi:
    """The endpoints our operations need, with Kubernetes ``Status`` errors mapped to ExecutorErrors."""

    def __init__(
        self, client: httpx.AsyncClient, *, token: SecretStr | None = None, field_manager: str = "rcaflow"
    ) -> None:
        self._client = client
        self._token = token
        self.field_manager = field_manager

    @classmethod
    def from_config(cls, config: K8sConfig, client: httpx.AsyncClient | None = None) -> K8sApi:
        """A client for ``config``; the caller owns it and closes it with :meth:`aclose`.

        ``client``: one built by the composition root (proxy, host allow-list) with
        ``base_url=config.server`` and ``verify=config.ssl_context()``.
        """
        if client is None:
            client = httpx.AsyncClient(base_url=config.server.rstrip("/"), verify=config.ssl_context(),
                                       timeout=config.timeout_s, follow_redirects=False)
        return cls(client, token=config.token, field_manager=config.field_manager)

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ plumbing

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str | None = None,
        dry_run: bool = False,
    ) -> httpx.Response:
        query = dict(params or {})
        if dry_run:
            query["dryRun"] = "All"
        if method == "PATCH":
            query["fieldManager"] = self.field_manager
        headers = {"Accept": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        if content_type:
            headers["Content-Type"] = content_type
        response = await self._client.request(
            method, path, params=query or None, json=body, headers=headers
        )
        if response.is_success:
            return response
        raise self._error(method, path, response)

    async def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.request(method, path, **kwargs)
        data = response.json()
        if not isinstance(data, dict):
            raise UpstreamError(f"k8s {method} {path}: expected a JSON object")
        return data

    @staticmethod
    def _error(method: str, path: str, response: httpx.Response) -> UpstreamError:
        reason, message = response.reason_phrase, ""
        try:
            status = response.json()
        except ValueError:
            status = None
        if isinstance(status, dict) and status.get("kind") == "Status":
            reason = str(status.get("reason") or reason)
            message = str(status.get("message") or "")
        else:
            message = response.text
        message = message[:_MAX_STATUS_MESSAGE]
        return error_for_status(
            response.status_code,
            f"k8s {method} {path}: {response.status_code} {reason}" + (f": {message}" if message else ""),
        )

    # ------------------------------------------------------------------ endpoints

    @staticmethod
    def workload_path(namespace: str, kind: str, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{_seg(namespace)}/{WORKLOAD_RESOURCES[kind]}/{_seg(name)}"

    @staticmethod
    def pod_path(namespace: str, pod: str) -> str:
        return f"/api/v1/namespaces/{_seg(namespace)}/pods/{_seg(pod)}"

    async def get_workload(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        return await self.json("GET", self.workload_path(namespace, kind, name))

    async def patch_workload(
        self, namespace: str, kind: str, name: str, patch: dict[str, Any], *, dry_run: bool
    ) -> dict[str, Any]:
        return await self.json(
            "PATCH", self.workload_path(namespace, kind, name), body=patch,
            content_type=STRATEGIC_MERGE, dry_run=dry_run,
        )

    async def get_scale(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        return await self.json("GET", self.workload_path(namespace, kind, name) + "/scale")

    async def patch_scale(
        self, namespace: str, kind: str, name: str, replicas: int, *, dry_run: bool
    ) -> dict[str, Any]:
        return await self.json(
            "PATCH", self.workload_path(namespace, kind, name) + "/scale",
            body={"spec": {"replicas": replicas}}, content_type=MERGE_PATCH, dry_run=dry_run,
        )

    async def get_pod(self, namespace: str, pod: str) -> dict[str, Any]:
        return await self.json("GET", self.pod_path(namespace, pod))

    async def patch_pod(self, namespace: str, pod: str, patch: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        return await self.json(
            "PATCH", self.pod_path(namespace, pod), body=patch, content_type=MERGE_PATCH, dry_run=dry_run
        )

    async def delete_pod(self, namespace: str, pod: str, *, dry_run: bool) -> dict[str, Any]:
        return await self.json("DELETE", self.pod_path(namespace, pod), dry_run=dry_run)

    async def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        data = await self.json("GET", f"/api/v1/namespaces/{_seg(namespace)}/pods", params={"limit": "500"})
        return [item for item in data.get("items", []) if isinstance(item, dict)]

    async def list_events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]:
        data = await self.json(
            "GET",
            f"/api/v1/namespaces/{_seg(namespace)}/events",
            params={"fieldSelector": f"involvedObject.name={involved_name}", "limit": "100"},
        )
        return [item for item in data.get("items", []) if isinstance(item, dict)]

    async def pod_log(self, namespace: str, pod: str, *, tail_lines: int) -> str:
        response = await self.request(
            "GET", self.pod_path(namespace, pod) + "/log", params={"tailLines": str(tail_lines)}
        )
        return response.text


def load_kubeconfig(path: str | None = None, *, context: str | None = None, in_cluster: bool = False) -> K8sConfig:
    """Read a kubeconfig (or the in-cluster service account) into a :class:`K8sConfig`.

    Uses the optional ``kubernetes`` SDK only for its config loaders (exec/OIDC
    plugins, in-cluster token files). Blocking file I/O: call it at start-up.
    """
    try:
        from kubernetes import client as k8s_client  # optional dependency
        from kubernetes import config as k8s_config
    except ImportError as exc:
        raise ImportError(
            "reading a kubeconfig needs the Kubernetes SDK: run \"pip install 'rcaflow[kubernetes]'\""
        ) from exc
    configuration = k8s_client.Configuration()
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration
            )
    except (k8s_config.ConfigException, OSError) as exc:
        raise ToolNotConfiguredError(f"cannot load Kubernetes config: {exc}") from exc
    # Newer SDKs keep the token under "BearerToken", older ones under "authorization".
    auth = configuration.get_api_key_with_prefix("BearerToken", alias="authorization") or ""
    token = str(auth).removeprefix("Bearer ").strip() or None
    return K8sConfig(
        server=configuration.host,
        token=SecretStr(token) if token else None,
        ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        verify_tls=bool(configuration.verify_ssl),
    )
