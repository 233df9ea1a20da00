"""The Kubernetes API calls rcaflow's actions and evidence make, on the official client's asyncio API.

The official ``kubernetes`` package (37+) ships ``kubernetes.aio``: the same
generated client as the sync one, over aiohttp, with the same config loaders
(kubeconfig with exec plugins, in-cluster service account) as coroutines. We
use it rather than the sync client in a thread pool: no thread per call and
no blocking of the event loop while a rollout is watched, the exec credential
plugin runs as an asyncio subprocess, and client-go's ``RetryOnConflict`` is
there as a coroutine (``kubernetes.aio.utils.retry``). The package is an
optional dependency (``rcaflow[kubernetes]``) and heavy to import, so it is
imported on the first call, not with this module.

One :class:`K8sApi` is built by the composition root from one of three sources
(:class:`K8sConfig` explicit settings, a kubeconfig, or the pod's service
account) and the outbound rules (:class:`Outbound`: proxy, no_proxy, host
allow-list). It connects lazily, inside the running event loop, and turns the
client's exceptions into the typed :mod:`executors.errors`, with a 403 naming
the permission that was missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from executors.errors import ToolNotConfiguredError, UnavailableError, UpstreamError, error_for_status

if TYPE_CHECKING:
    from kubernetes.aio.client import ApiClient, Configuration

logger = logging.getLogger(__name__)

T = TypeVar("T")

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
#: Longest upstream message we copy into an error (and so into a record).
_MAX_STATUS_MESSAGE = 500
#: A token read from a file (projected service-account token) is read again this often.
TOKEN_FILE_REREAD = timedelta(minutes=1)
#: An exec-plugin credential is renewed this long before the expiry it announced.
EXPIRY_SKEW = timedelta(minutes=1)

WORKLOAD_RESOURCES = {"deployment": "deployments", "statefulset": "statefulsets", "daemonset": "daemonsets"}
#: Kinds whose objects we may read when walking ownerReferences: kind -> (API group path, resource).
OWNER_KINDS = {
    "ReplicaSet": ("/apis/apps/v1", "replicasets"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
}
_METHODS = {"replicasets": "replica_set", "deployments": "deployment", "statefulsets": "stateful_set",
            "daemonsets": "daemon_set", "jobs": "job", "cronjobs": "cron_job"}


class K8sConfig(BaseModel):
    """Explicit cluster settings (server, CA, credentials); built by the composition root, never from a mail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str
    token: SecretStr | None = None
    #: A token file read again every minute (a projected service-account token rotates).
    token_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_tls: bool = True
    timeout_s: float = 10.0
    field_manager: str = "rcaflow"


@dataclass(frozen=True, slots=True)
class Outbound:
    """The deployment's outbound rules (``http.proxy``, ``http.no_proxy``, ``http.allowed_hosts``)."""

    proxy: str | None = None
    no_proxy: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()

    def check(self, host: str) -> None:
        allowed = [p.lower() for p in self.allowed_hosts]
        if allowed and not any(fnmatch.fnmatchcase(host.lower(), p) for p in allowed):
            raise ToolNotConfiguredError(
                f"k8s: outbound call to {host!r} is not in http.allowed_hosts; request not sent")

    def proxy_for(self, host: str) -> str | None:
        if not self.proxy or any(fnmatch.fnmatchcase(host.lower(), p.strip().lower()) for p in self.no_proxy):
            return None
        return self.proxy


@dataclass(frozen=True, slots=True, order=True)
class Permission:
    """One RBAC rule an operation needs: ``verb`` on ``resource`` in API ``group`` ("" is the core group)."""

    group: str
    resource: str
    verb: str


def permissions(group: str, resources: str, verbs: str) -> frozenset[Permission]:
    """``permissions("apps", "deployments statefulsets", "get patch")``: every resource with every verb."""
    return frozenset(Permission(group, r, v) for r in resources.split() for v in verbs.split())


@dataclass(frozen=True, slots=True)
class Call:
    """One API call, described the way RBAC sees it, for logs and for a 403 that names what is missing."""

    method: str
    path: str
    verb: str
    resource: str
    group: str = ""
    namespace: str = ""

    def permission(self) -> str:
        group = f'in API group "{self.group}"' if self.group else "in the core API group"
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource} {group}{where}"


def _seg(value: str) -> str:
    # Values are validated DNS-1123 names already; quoting is the second belt.
    return quote(value, safe="")


# ----------------------------------------------------------------------------- credential sources


class CredentialSource(Protocol):
    """Fills a client ``Configuration`` and keeps its credential fresh."""

    def describe(self) -> str: ...

    async def load(self, configuration: Configuration) -> None: ...

    async def refresh(self, configuration: Configuration, *, force: bool) -> bool:
        """Renew the credential when due (or now, with ``force``); True when something was renewed."""
        ...


class ExplicitSource:
    """Server, CA and a token, a token file or a client certificate given in rcaflow's settings."""

    def __init__(self, config: K8sConfig) -> None:
        self.config = config
        self._read_at = 0.0

    def describe(self) -> str:
        return f"explicit settings for {self.config.server}"

    async def load(self, configuration: Configuration) -> None:
        c = self.config
        configuration.host = c.server.rstrip("/")
        configuration.ssl_ca_cert = c.ca_file
        configuration.cert_file = c.cert_file
        configuration.key_file = c.key_file
        configuration.verify_ssl = c.verify_tls
        if c.token is not None:
            configuration.api_key["BearerToken"] = f"Bearer {c.token.get_secret_value()}"
        await self.refresh(configuration, force=True)

    async def refresh(self, configuration: Configuration, *, force: bool) -> bool:
        if not self.config.token_file:
            return False
        if not force and time.monotonic() - self._read_at < TOKEN_FILE_REREAD.total_seconds():
            return False
        token = Path(self.config.token_file).read_text(encoding="utf-8").strip()  # a few hundred bytes
        self._read_at = time.monotonic()
        configuration.api_key["BearerToken"] = f"Bearer {token}"
        return True


class KubeconfigSource:
    """A kubeconfig file and context; an exec plugin's token (EKS, GKE, OIDC helpers) is renewed before it expires."""

    def __init__(self, path: str | None, context: str | None = None) -> None:
        self.path, self.context = path, context
        self._loader: Any = None

    def describe(self) -> str:
        return f"kubeconfig {self.path or '~/.kube/config'}" + (f" context {self.context}" if self.context else "")

    async def load(self, configuration: Configuration) -> None:
        from kubernetes.aio.config import ConfigException, load_kube_config

        try:
            self._loader = await load_kube_config(  # type: ignore[no-untyped-call]
                config_file=self.path, context=self.context, client_configuration=configuration,
                persist_config=False)
        except (ConfigException, OSError, KeyError, ValueError) as exc:
            raise ToolNotConfiguredError(f"cannot load Kubernetes config from {self.describe()}: {exc}") from exc

    def _exec_user(self) -> bool:
        user = getattr(self._loader, "_user", None)
        return user is not None and "exec" in user

    async def refresh(self, configuration: Configuration, *, force: bool) -> bool:
        if self._loader is None or not self._exec_user():
            return False  # a static token or a client certificate: nothing to renew
        expiry = getattr(self._loader, "exec_plugin_expiry", None)
        if not force and (expiry is None or expiry - EXPIRY_SKEW > datetime.now(UTC)):
            return False  # client-go too keeps a credential without expiry until the server refuses it
        if expiry is not None:
            del self._loader.exec_plugin_expiry  # else the loader answers from its cache
        if not await self._loader.load_from_exec_plugin() or not getattr(self._loader, "token", None):
            logger.warning("k8s: the kubeconfig's exec plugin gave no new credential")
            return False
        configuration.api_key["BearerToken"] = self._loader.token
        logger.info("k8s: renewed the exec-plugin credential of %s", self.describe())
        return True


class InClusterSource:
    """The pod's service account: the API server from the environment, the token file re-read every minute."""

    def describe(self) -> str:
        return "in-cluster service account"

    async def load(self, configuration: Configuration) -> None:
        from kubernetes.aio.config import ConfigException, load_incluster_config

        try:
            # Reads two small files and sets its own hook that re-reads the token every minute.
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError) as exc:
            raise ToolNotConfiguredError(f"cannot load the in-cluster Kubernetes config: {exc}") from exc

    async def refresh(self, configuration: Configuration, *, force: bool) -> bool:
        if not force:
            return False  # the loader's own hook re-reads the token file every minute
        await self.load(configuration)
        return True


# ----------------------------------------------------------------------------- the client


class K8sApi:
    """The endpoints our operations need, each returning the object as the API server's JSON (a dict)."""

    def __init__(
        self,
        source: CredentialSource,
        *,
        outbound: Outbound | None = None,
        field_manager: str = "rcaflow",
        timeout_s: float = 10.0,
        transport: Callable[[Configuration], Any] | None = None,
    ) -> None:
        """``transport``: builds the client's REST layer instead of aiohttp (tests serve a stand-in in-process)."""
        self.source = source
        self.outbound = outbound or Outbound()
        self.field_manager = field_manager
        self.timeout_s = timeout_s
        self._transport = transport
        self._client: ApiClient | None = None
        self._lock: asyncio.Lock | None = None
        #: scheme://host:port once connected (for messages: never a path or query, which may carry secrets).
        self.server = "the Kubernetes API server"
        _preload()

    @classmethod
    def from_config(cls, config: K8sConfig, *, outbound: Outbound | None = None,
                    transport: Callable[[Configuration], Any] | None = None) -> K8sApi:
        return cls(ExplicitSource(config), outbound=outbound, field_manager=config.field_manager,
                   timeout_s=config.timeout_s, transport=transport)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, *, context: str | None = None,
                        outbound: Outbound | None = None, timeout_s: float = 10.0) -> K8sApi:
        return cls(KubeconfigSource(path, context), outbound=outbound, timeout_s=timeout_s)

    @classmethod
    def in_cluster(cls, *, outbound: Outbound | None = None, timeout_s: float = 10.0) -> K8sApi:
        return cls(InClusterSource(), outbound=outbound, timeout_s=timeout_s)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ plumbing

    async def client(self) -> ApiClient:
        """The connected client; the first call loads the credentials (in the running loop)."""
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                self._client = await self._connect()
        return self._client

    async def _connect(self) -> ApiClient:
        _require_client()
        import aiohttp
        from kubernetes.aio.client import ApiClient, Configuration

        configuration = Configuration()
        configuration.retries = None  # retrying is the caller's decision (and 409s are retried by re-reading)
        await self.source.load(configuration)
        parts = urlsplit(configuration.host)
        host = parts.hostname or ""
        self.server = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
        self.outbound.check(host)
        if self.outbound.proxy:
            configuration.proxy = self.outbound.proxy_for(host)
        # else a kubeconfig's own proxy-url, if any, stays
        # Our settings, not the process environment, say which proxy to use.
        configuration.client_session_kwargs = {"trust_env": False}
        configuration.trace_configs = [_no_redirects(aiohttp)]
        source = self.source

        async def refresh_hook(conf: Configuration) -> None:
            await source.refresh(conf, force=False)

        if not isinstance(self.source, InClusterSource):  # that loader installs its own hook
            configuration.refresh_api_key_hook = refresh_hook  # type: ignore[assignment]
        client = ApiClient(configuration=configuration)
        client.user_agent = f"rcaflow ({self.field_manager})"
        if self._transport is not None:
            await client.rest_client.close()
            client.rest_client = self._transport(configuration)
        logger.info("k8s: connected to %s (%s)", self.server, self.source.describe())
        return client

    async def call(self, call: Call, fn: Callable[[ApiClient], Awaitable[T]]) -> T:
        """Run one generated-client call; every failure leaves as an ExecutorError."""
        import aiohttp
        from kubernetes.aio.client.exceptions import ApiException

        client = await self.client()
        renewed = False
        while True:
            try:
                return await fn(client)
            except ApiException as exc:
                if exc.status == 401 and not renewed:
                    renewed = True
                    if await self.source.refresh(client.configuration, force=True):
                        continue  # an expired exec/service-account token: renew once, like client-go
                raise self._error(call, exc) from None
            except aiohttp.TooManyRedirects as exc:
                raise UpstreamError(f"k8s {call.method} {call.path}: {self.server} answered with a redirect, which "
                                    "is not followed (a proxy or load balancer in front of the API server?)",
                                    status=exc.status, retriable=False) from exc
            except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
                raise UpstreamError(f"k8s {call.method} {call.path}: TLS with {self.server} failed "
                                    f"({type(exc).__name__}); check the cluster CA", retriable=False) from exc
            except TimeoutError as exc:
                raise UnavailableError(f"k8s {call.method} {call.path}: timed out talking to {self.server}") from exc
            except aiohttp.ClientError as exc:
                raise UnavailableError(
                    f"k8s {call.method} {call.path}: cannot reach {self.server}: {type(exc).__name__}") from exc

    def _error(self, call: Call, exc: Any) -> UpstreamError:
        import json

        status = int(exc.status or 0)
        reason, message = str(exc.reason or ""), ""
        try:
            body = json.loads(exc.body) if exc.body else None
        except (TypeError, ValueError):
            body = None
        if isinstance(body, dict) and body.get("kind") == "Status":
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or "")
        elif exc.body:
            message = str(exc.body)
        text = f"k8s {call.method} {call.path}: {status} {reason}"
        if message:
            text += f": {message[:_MAX_STATUS_MESSAGE]}"
        if status == 403:
            text += (f" (missing permission: {call.permission()}; grant it to the identity rcaflow uses: "
                     f"{self.source.describe()})")
        elif status == 401:
            text += " (the credential was refused: expired or revoked token, or a client certificate not trusted)"
        return error_for_status(status, text)

    @staticmethod
    async def _body(pending: Awaitable[Any]) -> bytes:
        """The body of a generated ``*_without_preload_content`` call; a non-2xx answer raises ``ApiException``.

        We take the server's JSON as it is instead of the generated models: they are strict (a field they do
        not expect in a newer server's answer fails validation) and we only read a few fields anyway.
        """
        from kubernetes.aio.client.exceptions import ApiException

        response = await pending
        try:
            body: bytes = await response.read()
        finally:
            response.release()
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=response.reason,
                               body=body.decode("utf-8", errors="replace"))
        return body

    async def _json(self, pending: Awaitable[Any]) -> dict[str, Any]:
        import json

        try:
            data = json.loads(await self._body(pending))
        except ValueError as exc:
            raise UpstreamError("k8s: the API server answered with something that is not JSON") from exc
        if not isinstance(data, dict):
            raise UpstreamError("k8s: expected a JSON object from the API server")
        return data

    def _timeout(self) -> float:
        return self.timeout_s

    # ------------------------------------------------------------------ paths (for messages and dry-run previews)

    @staticmethod
    def workload_path(namespace: str, kind: str, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{_seg(namespace)}/{WORKLOAD_RESOURCES[kind]}/{_seg(name)}"

    @staticmethod
    def pod_path(namespace: str, pod: str) -> str:
        return f"/api/v1/namespaces/{_seg(namespace)}/pods/{_seg(pod)}"

    # ------------------------------------------------------------------ workloads

    def _apps(self, client: ApiClient) -> Any:
        from kubernetes.aio.client import AppsV1Api

        return AppsV1Api(client)

    async def get_workload(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        resource = WORKLOAD_RESOURCES[kind]
        call = Call("GET", self.workload_path(namespace, kind, name), "get", resource, "apps", namespace)

        async def go(client: ApiClient) -> dict[str, Any]:
            read = getattr(self._apps(client), f"read_namespaced_{_METHODS[resource]}_without_preload_content")
            return await self._json(read(name, namespace, _request_timeout=self._timeout()))

        return await self.call(call, go)

    async def patch_workload(
        self, namespace: str, kind: str, name: str, patch: dict[str, Any], *, dry_run: bool
    ) -> dict[str, Any]:
        resource = WORKLOAD_RESOURCES[kind]
        call = Call("PATCH", self.workload_path(namespace, kind, name), "patch", resource, "apps", namespace)

        async def go(client: ApiClient) -> dict[str, Any]:
            method = getattr(self._apps(client), f"patch_namespaced_{_METHODS[resource]}_without_preload_content")
            return await self._json(method(
                name, namespace, patch, dry_run="All" if dry_run else None, field_manager=self.field_manager,
                _content_type=STRATEGIC_MERGE, _request_timeout=self._timeout()))

        return await self.call(call, go)

    async def get_scale(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        resource = WORKLOAD_RESOURCES[kind]
        call = Call("GET", self.workload_path(namespace, kind, name) + "/scale", "get", f"{resource}/scale",
                    "apps", namespace)

        async def go(client: ApiClient) -> dict[str, Any]:
            read = getattr(self._apps(client), f"read_namespaced_{_METHODS[resource]}_scale_without_preload_content")
            return await self._json(read(name, namespace, _request_timeout=self._timeout()))

        return await self.call(call, go)

    async def patch_scale(
        self, namespace: str, kind: str, name: str, replicas: int, *, dry_run: bool,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        """Set ``spec.replicas``; with ``resource_version`` the server refuses (409) if the scale moved meanwhile."""
        resource = WORKLOAD_RESOURCES[kind]
        call = Call("PATCH", self.workload_path(namespace, kind, name) + "/scale", "patch", f"{resource}/scale",
                    "apps", namespace)
        body: dict[str, Any] = {"spec": {"replicas": replicas}}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}

        async def go(client: ApiClient) -> dict[str, Any]:
            method = getattr(self._apps(client), f"patch_namespaced_{_METHODS[resource]}_scale_without_preload_content")
            return await self._json(method(
                name, namespace, body, dry_run="All" if dry_run else None, field_manager=self.field_manager,
                _content_type=MERGE_PATCH, _request_timeout=self._timeout()))

        return await self.call(call, go)

    async def get_owner(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        """A controller object named in an ownerReference (one of :data:`OWNER_KINDS`)."""
        group, resource = OWNER_KINDS[kind]
        path = f"{group}/namespaces/{_seg(namespace)}/{resource}/{_seg(name)}"
        call = Call("GET", path, "get", resource, group.split("/")[2], namespace)

        async def go(client: ApiClient) -> dict[str, Any]:
            from kubernetes.aio.client import BatchV1Api

            api = self._apps(client) if group == "/apis/apps/v1" else BatchV1Api(client)
            read = getattr(api, f"read_namespaced_{_METHODS[resource]}_without_preload_content")
            return await self._json(read(name, namespace, _request_timeout=self._timeout()))

        return await self.call(call, go)

    # ------------------------------------------------------------------ pods and events

    def _core(self, client: ApiClient) -> Any:
        from kubernetes.aio.client import CoreV1Api

        return CoreV1Api(client)

    async def get_pod(self, namespace: str, pod: str) -> dict[str, Any]:
        call = Call("GET", self.pod_path(namespace, pod), "get", "pods", "", namespace)

        async def go(client: ApiClient) -> dict[str, Any]:
            return await self._json(self._core(client).read_namespaced_pod_without_preload_content(
                pod, namespace, _request_timeout=self._timeout()))

        return await self.call(call, go)

    async def patch_pod(self, namespace: str, pod: str, patch: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        call = Call("PATCH", self.pod_path(namespace, pod), "patch", "pods", "", namespace)

        async def go(client: ApiClient) -> dict[str, Any]:
            return await self._json(self._core(client).patch_namespaced_pod_without_preload_content(
                pod, namespace, patch, dry_run="All" if dry_run else None, field_manager=self.field_manager,
                _content_type=MERGE_PATCH, _request_timeout=self._timeout()))

        return await self.call(call, go)

    async def delete_pod(self, namespace: str, pod: str, *, dry_run: bool) -> dict[str, Any]:
        call = Call("DELETE", self.pod_path(namespace, pod), "delete", "pods", "", namespace)

        async def go(client: ApiClient) -> dict[str, Any]:
            return await self._json(self._core(client).delete_namespaced_pod_without_preload_content(
                pod, namespace, dry_run="All" if dry_run else None, _request_timeout=self._timeout()))

        return await self.call(call, go)

    async def list_pods(self, namespace: str, *, selector: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        call = Call("GET", f"/api/v1/namespaces/{_seg(namespace)}/pods", "list", "pods", "", namespace)

        async def go(client: ApiClient) -> list[dict[str, Any]]:
            data = await self._json(self._core(client).list_namespaced_pod_without_preload_content(
                namespace, label_selector=selector, limit=limit, _request_timeout=self._timeout()))
            return [item for item in data.get("items") or [] if isinstance(item, dict)]

        return await self.call(call, go)

    async def list_events(self, namespace: str, involved_name: str, *, limit: int = 100) -> list[dict[str, Any]]:
        call = Call("GET", f"/api/v1/namespaces/{_seg(namespace)}/events", "list", "events", "", namespace)

        async def go(client: ApiClient) -> list[dict[str, Any]]:
            data = await self._json(self._core(client).list_namespaced_event_without_preload_content(
                namespace, field_selector=f"involvedObject.name={involved_name}", limit=limit,
                _request_timeout=self._timeout()))
            return [item for item in data.get("items") or [] if isinstance(item, dict)]

        return await self.call(call, go)

    async def pod_log(
        self, namespace: str, pod: str, *, tail_lines: int, limit_bytes: int | None = None,
        container: str | None = None, since_seconds: int | None = None,
    ) -> str:
        call = Call("GET", self.pod_path(namespace, pod) + "/log", "get", "pods/log", "", namespace)

        async def go(client: ApiClient) -> str:
            body = await self._body(self._core(client).read_namespaced_pod_log_without_preload_content(
                pod, namespace, tail_lines=tail_lines, limit_bytes=limit_bytes, container=container,
                since_seconds=since_seconds, _request_timeout=self._timeout()))
            return body.decode("utf-8", errors="replace")

        return await self.call(call, go)


def _no_redirects(aiohttp: Any) -> Any:
    """A trace config that refuses redirects: the API server never sends one, and a redirect could leave the
    allow-list (aiohttp follows them by default and the generated client gives no way to turn that off)."""
    trace = aiohttp.TraceConfig()

    async def on_redirect(session: Any, context: Any, params: Any) -> None:
        raise aiohttp.TooManyRedirects(params.response.request_info, (),
                                       message="the Kubernetes API answered with a redirect; not followed")

    trace.on_request_redirect.append(on_redirect)
    return trace


async def retry_on_conflict(fn: Callable[[], Awaitable[T]]) -> T:
    """client-go's ``RetryOnConflict`` (5 tries, ~10 ms apart): ``fn`` re-reads and re-decides on each try."""
    _require_client()
    from kubernetes.aio.utils.retry import retry_on_conflict as official

    return await official(fn)


def _preload() -> None:
    """Import the generated client now, at start-up: it takes a second or more, which must not come out of the
    first call's time budget (nor block the event loop mid-flight). Missing, it is reported by the first call."""
    with contextlib.suppress(ImportError):
        import kubernetes.aio.client.api.apps_v1_api
        import kubernetes.aio.client.api.batch_v1_api
        import kubernetes.aio.client.api.core_v1_api
        import kubernetes.aio.config
        import kubernetes.aio.utils.retry  # noqa: F401


def _require_client() -> None:
    try:
        import kubernetes.aio.client  # noqa: F401
    except ImportError as exc:
        raise ToolNotConfiguredError(
            "the Kubernetes tools need the official client: pip install 'rcaflow[kubernetes]'") from exc
