"""A local stand-in for the parts of the Kubernetes API our k8s tools use (ASGI app, no cluster needed).

Implements, as the API server documents them: GET/PATCH of apps/v1 workloads
and their ``/scale`` subresource, GET/PATCH/DELETE of pods, pod and event
lists (``fieldSelector=involvedObject.name=…``), pod logs (``tailLines``),
strategic-merge / merge patches, ``?dryRun=All`` (validated, answered, not
persisted), ``Status`` error bodies for 401/403/404/409/415, and bearer-token
auth with a read-only token that RBAC refuses writes. 409 Conflict only
happens on stale ``resourceVersion`` updates, which our patches never send,
so tests inject it with :meth:`K8sStandIn.fail_next`.

Workload ``status`` is what the controllers would report, computed on each
read: a rollout completes at once unless a test called
:meth:`K8sStandIn.break_rollouts` (new pods never become ready until the pod
template is back to the one that was healthy) or :meth:`K8sStandIn.limit_capacity`
(no room for more than N ready pods).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

MERGE_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json")
RESOURCES = {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet"}
SCALABLE = ("deployments", "statefulsets")
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            415: "UnsupportedMediaType", 500: "InternalError"}


def status(code: int, message: str, reason: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
         "reason": reason or _REASONS.get(code, "Unknown"), "code": code},
        status_code=code,
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386; for the maps we patch, strategic merge behaves the same."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class Fault:
    method: str
    code: int
    message: str


@dataclass
class K8sStandIn:
    token: str = "admin-token"
    viewer_token: str = "viewer-token"
    workloads: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    #: Every write request as (method, path, query), dry runs included.
    writes: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    #: Workloads whose new pods never become ready, with the pod template that still works.
    healthy_templates: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    #: Workloads that cannot get more than this many ready pods (no room on the nodes).
    capacity: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: Workloads whose stuck rollout also reports ProgressDeadlineExceeded.
    deadline_exceeded: set[tuple[str, str, str]] = field(default_factory=set)
    _rv: int = 100

    # ------------------------------------------------------------------ seeding

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def add_workload(self, namespace: str, resource: str, name: str, *, replicas: int = 1) -> None:
        self.workloads[(namespace, resource, name)] = {
            "apiVersion": "apps/v1", "kind": RESOURCES[resource],
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": self._next_rv(), "generation": 1},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": name}}, "spec": {}}},
        }

    def add_pod(self, namespace: str, name: str, *, annotations: dict[str, str] | None = None,
                phase: str = "Running", restarts: int = 0, waiting: str | None = None) -> None:
        state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
        self.pods[(namespace, name)] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "resourceVersion": self._next_rv(), "annotations": dict(annotations or {})},
            "status": {"phase": phase, "containerStatuses": [
                {"name": "main", "restartCount": restarts, "state": state}]},
        }

    def add_event(self, namespace: str, involved: str, reason: str, message: str, *,
                  kind: str = "Pod", type_: str = "Warning", at: str = "2026-11-25T10:00:00Z") -> None:
        self.events.append({
            "metadata": {"namespace": namespace, "name": f"{involved}.{len(self.events)}"},
            "involvedObject": {"kind": kind, "name": involved, "namespace": namespace},
            "reason": reason, "message": message, "type": type_, "count": 1, "lastTimestamp": at,
        })

    def fail_next(self, method: str, code: int, message: str) -> None:
        self.faults.append(Fault(method, code, message))

    def break_rollouts(self, namespace: str, resource: str, name: str, *, deadline_exceeded: bool = False) -> None:
        """From now on, pods from any other pod template than the current one never become ready."""
        key = (namespace, resource, name)
        self.healthy_templates[key] = copy.deepcopy(self.workloads[key]["spec"]["template"])
        if deadline_exceeded:
            self.deadline_exceeded.add(key)

    def limit_capacity(self, namespace: str, resource: str, name: str, ready: int) -> None:
        self.capacity[(namespace, resource, name)] = ready

    def template(self, namespace: str, resource: str, name: str) -> dict[str, Any]:
        return dict(self.workloads[(namespace, resource, name)]["spec"]["template"])

    def _with_status(self, key: tuple[str, str, str], obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` with the status its controller would report by now."""
        spec, generation = obj["spec"], obj["metadata"]["generation"]
        replicas = spec.get("replicas", 1)
        healthy = self.healthy_templates.get(key)
        stuck = healthy is not None and spec.get("template") != healthy
        ready = min(replicas, self.capacity.get(key, replicas))
        resource = key[1]
        if resource == "deployments":
            status: dict[str, Any] = {"observedGeneration": generation, "replicas": replicas, "updatedReplicas":
                                      replicas, "readyReplicas": ready, "availableReplicas": ready}
            if stuck:
                status.update(replicas=replicas + 1, updatedReplicas=1, unavailableReplicas=1)
                if key in self.deadline_exceeded:
                    status["conditions"] = [{"type": "Progressing", "status": "False",
                                             "reason": "ProgressDeadlineExceeded"}]
        elif resource == "statefulsets":
            revision = f"{key[2]}-{_template_hash(spec.get('template'))}"
            status = {"observedGeneration": generation, "replicas": replicas, "readyReplicas": ready,
                      "updatedReplicas": replicas, "currentRevision": revision, "updateRevision": revision}
            if stuck:
                status.update(readyReplicas=replicas - 1, updatedReplicas=1,
                              currentRevision=f"{key[2]}-{_template_hash(healthy)}")
        else:
            status = {"observedGeneration": generation, "desiredNumberScheduled": replicas,
                      "updatedNumberScheduled": 1 if stuck else replicas,
                      "numberAvailable": replicas - 1 if stuck else ready}
        return {**obj, "status": status}

    # ------------------------------------------------------------------ plumbing

    def _guard(self, request: Request, verb: str, resource: str, name: str, namespace: str) -> Response | None:
        auth = request.headers.get("authorization", "")
        if auth not in (f"Bearer {self.token}", f"Bearer {self.viewer_token}"):
            return status(401, "Unauthorized")
        if request.method != "GET":
            self.writes.append((request.method, request.url.path, dict(request.query_params)))
        if request.method != "GET" and auth == f"Bearer {self.viewer_token}":
            return status(403, f'{resource} "{name}" is forbidden: User "system:serviceaccount:rcaflow:viewer" '
                               f'cannot {verb} resource "{resource}" in API group "" in the namespace "{namespace}"')
        for fault in self.faults:
            if fault.method == request.method:
                self.faults.remove(fault)
                return status(fault.code, fault.message)
        dry_run = request.query_params.get("dryRun")
        if dry_run is not None and dry_run != "All":
            return status(400, f'Invalid dry run value "{dry_run}": only "All" is supported')
        return None

    @staticmethod
    async def _patch_body(request: Request) -> dict[str, Any] | Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype not in MERGE_TYPES:
            return status(415, f'the body of the request was in an unknown format - accepted media types include: '
                               f'{", ".join(MERGE_TYPES)}')
        try:
            body = json.loads(await request.body())
        except ValueError:
            return status(400, "the body of the request is not JSON")
        return body if isinstance(body, dict) else status(400, "patch must be a JSON object")

    # ------------------------------------------------------------------ handlers

    async def workload(self, request: Request) -> Response:
        ns, resource, name = (request.path_params[k] for k in ("ns", "resource", "name"))
        if denied := self._guard(request, "patch", resource, name, ns):
            return denied
        obj = self.workloads.get((ns, resource, name))
        if resource not in RESOURCES or obj is None:
            return status(404, f'{resource}.apps "{name}" not found')
        key = (ns, resource, name)
        if request.method == "GET":
            return JSONResponse(self._with_status(key, obj))
        patch = await self._patch_body(request)
        if isinstance(patch, Response):
            return patch
        updated = merge_patch(obj, patch)
        updated.pop("status", None)
        _omit_empty_annotations(updated)
        if updated["spec"] != obj["spec"]:
            updated["metadata"]["generation"] = obj["metadata"]["generation"] + 1
        if request.query_params.get("dryRun") != "All":
            updated["metadata"]["resourceVersion"] = self._next_rv()
            self.workloads[key] = updated
        return JSONResponse(self._with_status(key, updated))

    async def scale(self, request: Request) -> Response:
        ns, resource, name = (request.path_params[k] for k in ("ns", "resource", "name"))
        if denied := self._guard(request, "patch", f"{resource}/scale", name, ns):
            return denied
        obj = self.workloads.get((ns, resource, name))
        if resource not in SCALABLE or obj is None:
            return status(404, f'{resource}.apps "{name}" not found')

        def as_scale(replicas: int) -> dict[str, Any]:
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": ns}, "spec": {"replicas": replicas},
                    "status": {"replicas": obj["spec"]["replicas"]}}

        if request.method == "GET":
            return JSONResponse(as_scale(obj["spec"]["replicas"]))
        patch = await self._patch_body(request)
        if isinstance(patch, Response):
            return patch
        replicas = (patch.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            return status(422, "spec.replicas: Invalid value: must be greater than or equal to 0", "Invalid")
        if request.query_params.get("dryRun") != "All" and obj["spec"]["replicas"] != replicas:
            obj["spec"]["replicas"] = replicas
            obj["metadata"]["resourceVersion"] = self._next_rv()
            obj["metadata"]["generation"] += 1
        return JSONResponse(as_scale(replicas))

    async def pod(self, request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        verb = {"GET": "get", "PATCH": "patch", "DELETE": "delete"}[request.method]
        if denied := self._guard(request, verb, "pods", name, ns):
            return denied
        obj = self.pods.get((ns, name))
        if obj is None:
            return status(404, f'pods "{name}" not found')
        dry = request.query_params.get("dryRun") == "All"
        if request.method == "GET":
            return JSONResponse(obj)
        if request.method == "DELETE":
            gone = merge_patch(obj, {"metadata": {"deletionTimestamp": "2026-11-25T10:00:00Z"}})
            if not dry:
                del self.pods[(ns, name)]
            return JSONResponse(gone)
        patch = await self._patch_body(request)
        if isinstance(patch, Response):
            return patch
        updated = merge_patch(obj, patch)
        if not dry:
            updated["metadata"]["resourceVersion"] = self._next_rv()
            self.pods[(ns, name)] = updated
        return JSONResponse(updated)

    async def pod_list(self, request: Request) -> Response:
        ns = request.path_params["ns"]
        if denied := self._guard(request, "list", "pods", "", ns):
            return denied
        items = [p for (pns, _), p in sorted(self.pods.items()) if pns == ns]
        return JSONResponse({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    async def event_list(self, request: Request) -> Response:
        ns = request.path_params["ns"]
        if denied := self._guard(request, "list", "events", "", ns):
            return denied
        selector = request.query_params.get("fieldSelector", "")
        wanted = selector.removeprefix("involvedObject.name=") if selector else None
        if selector and not selector.startswith("involvedObject.name="):
            return status(400, f'field label not supported: "{selector}"')
        items = [e for e in self.events if e["metadata"]["namespace"] == ns
                 and (wanted is None or e["involvedObject"]["name"] == wanted)]
        return JSONResponse({"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": items})

    async def pod_log(self, request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        if denied := self._guard(request, "get", "pods/log", name, ns):
            return denied
        if (ns, name) not in self.pods:
            return status(404, f'pods "{name}" not found')
        lines = self.logs.get((ns, name), "").splitlines()
        tail = request.query_params.get("tailLines")
        if tail is not None:
            lines = lines[-int(tail):] if int(tail) > 0 else []
        return PlainTextResponse("".join(line + "\n" for line in lines))

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/apis/apps/v1/namespaces/{ns}/{resource}/{name}", self.workload, methods=["GET", "PATCH"]),
            Route("/apis/apps/v1/namespaces/{ns}/{resource}/{name}/scale", self.scale, methods=["GET", "PATCH"]),
            Route("/api/v1/namespaces/{ns}/pods", self.pod_list, methods=["GET"]),
            Route("/api/v1/namespaces/{ns}/pods/{name}", self.pod, methods=["GET", "PATCH", "DELETE"]),
            Route("/api/v1/namespaces/{ns}/pods/{name}/log", self.pod_log, methods=["GET"]),
            Route("/api/v1/namespaces/{ns}/events", self.event_list, methods=["GET"]),
        ])


def _template_hash(template: Any) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _omit_empty_annotations(obj: Any) -> None:
    """The API server serialises ObjectMeta maps with omitempty: removing the last annotation removes the map."""
    if isinstance(obj, dict):
        if obj.get("annotations") == {}:
            del obj["annotations"]
        for value in obj.values():
            _omit_empty_annotations(value)
