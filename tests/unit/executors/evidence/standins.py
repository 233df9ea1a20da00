"""Local stand-ins speaking the documented JSON of the Kubernetes API (read side) and Elasticsearch ``_search``.

Kubernetes: extends the executors' stand-in with pod labels and ``labelSelector``
(equality terms), ``ownerReferences`` and apps/v1 ReplicaSets, and ``limitBytes`` /
``container`` on logs. Elasticsearch: ``POST /{index}/_search`` evaluating
``bool.filter`` of ``term`` / ``range`` (date math ``now-Nm``), ``terms`` and
``date_histogram`` aggregations, ``sort``, ``size``, ``_source``; anything else in
the query (``query_string``, ``match``…) is a 400 ``parsing_exception`` as ES answers
for unknown query types, so a test sees if we ever send one. Both can be told to
fail (status + documented error body) or to hang (for timeouts).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.unit.executors.k8s_standin import K8sStandIn, status


@dataclass
class K8sReadStandIn(K8sStandIn):
    replicasets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: Every GET as (path, query): what the tools asked for.
    reads: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    hang_s: float = 0.0

    def add_labelled_pod(self, namespace: str, name: str, labels: dict[str, str], *,
                         owner: tuple[str, str] | None = None, restarts: int = 0, ready: bool = True,
                         waiting: str | None = None) -> None:
        self.add_pod(namespace, name, restarts=restarts, waiting=waiting)
        meta = self.pods[(namespace, name)]["metadata"]
        meta["labels"] = dict(labels)
        if owner is not None:
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                        "controller": True, "uid": f"uid-{owner[1]}"}]
        self.pods[(namespace, name)]["status"]["conditions"] = [
            {"type": "Ready", "status": "True" if ready else "False"}]

    def add_replicaset(self, namespace: str, name: str, deployment: str) -> None:
        self.replicasets[(namespace, name)] = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "controller": True}]},
        }

    async def _read(self, request: Request) -> Response | None:
        self.reads.append((request.url.path, dict(request.query_params)))
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        return None

    async def pod_list(self, request: Request) -> Response:
        await self._read(request)
        ns = request.path_params["ns"]
        if denied := self._guard(request, "list", "pods", "", ns):
            return denied
        terms = [t for t in request.query_params.get("labelSelector", "").split(",") if t]
        items = []
        for (pns, _), pod in sorted(self.pods.items()):
            labels = pod["metadata"].get("labels") or {}
            if pns == ns and all(labels.get(k) == v for k, _, v in (t.partition("=") for t in terms)):
                items.append(pod)
        return JSONResponse({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    async def pod(self, request: Request) -> Response:
        await self._read(request)
        return await super().pod(request)

    async def event_list(self, request: Request) -> Response:
        await self._read(request)
        return await super().event_list(request)

    async def pod_log(self, request: Request) -> Response:
        await self._read(request)
        response = await super().pod_log(request)
        limit = request.query_params.get("limitBytes")
        if limit is not None and response.status_code == 200:
            return PlainTextResponse(bytes(response.body)[: int(limit)].decode(errors="replace"))
        return response

    async def replicaset(self, request: Request) -> Response:
        await self._read(request)
        ns, name = request.path_params["ns"], request.path_params["name"]
        if denied := self._guard(request, "get", "replicasets", name, ns):
            return denied
        obj = self.replicasets.get((ns, name))
        if obj is None:
            return status(404, f'replicasets.apps "{name}" not found')
        return JSONResponse(obj)

    def app(self) -> Starlette:
        base = super().app()
        routes = [Route("/apis/apps/v1/namespaces/{ns}/replicasets/{name}", self.replicaset, methods=["GET"])]
        for route in base.routes:
            assert isinstance(route, Route)
            handler = getattr(self, route.endpoint.__name__)
            routes.append(Route(route.path, handler, methods=sorted(route.methods or [])))
        return Starlette(routes=routes)


_NOW_MATH = re.compile(r"^now(?:-(\d+)([smhd]))?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _es_error(code: int, type_: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": {"root_cause": [{"type": type_, "reason": reason}], "type": type_,
                                   "reason": reason}, "status": code}, status_code=code)


@dataclass
class EsStandIn:
    docs: list[dict[str, Any]] = field(default_factory=list)
    now: datetime = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    #: (status, type, reason) answered to the next search.
    fail: tuple[int, str, str] | None = None
    hang_s: float = 0.0
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def add_logs(self, pod: str, message: str, n: int, *, namespace: str = "insight-system",
                 container: str = "main", minutes_ago: int = 1) -> None:
        at = self.now - timedelta(minutes=minutes_ago)
        for i in range(n):
            self.docs.append({"@timestamp": (at + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
                              "log": message.replace("{i}", str(i)),
                              "kubernetes": {"namespace_name": namespace, "pod_name": pod,
                                             "container_name": container}})

    @staticmethod
    def _get(doc: dict[str, Any], dotted: str) -> Any:
        node: Any = doc
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def _bound(self, text: str) -> datetime:
        match = _NOW_MATH.fullmatch(text)
        if match is None:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        back = int(match.group(1) or 0) * _UNITS.get(match.group(2) or "s", 1)
        return self.now - timedelta(seconds=back)

    def _matches(self, doc: dict[str, Any], clause: dict[str, Any]) -> bool:
        (kind, spec), = clause.items()
        if kind == "term":
            (fname, value), = spec.items()
            return self._get(doc, fname) == value
        if kind == "range":
            (fname, bounds), = spec.items()
            at = datetime.fromisoformat(str(self._get(doc, fname)).replace("Z", "+00:00"))
            return self._bound(bounds["gte"]) <= at <= self._bound(bounds["lte"])
        raise KeyError(kind)

    async def search(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append((request.url.path, body, dict(request.query_params)))
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        if self.fail is not None:
            code, type_, reason = self.fail
            self.fail = None
            return _es_error(code, type_, reason)
        if not request.path_params["index"].startswith("insight-es-k8s-logs"):
            return _es_error(404, "index_not_found_exception", f"no such index [{request.path_params['index']}]")
        query = body.get("query") or {"match_all": {}}
        if set(query) != {"bool"} or set(query["bool"]) != {"filter"}:
            return _es_error(400, "parsing_exception", f"unknown query [{next(iter(query))}]")
        try:
            hits = [d for d in self.docs if all(self._matches(d, c) for c in query["bool"]["filter"])]
        except KeyError as exc:
            return _es_error(400, "parsing_exception", f"unknown query [{exc.args[0]}]")
        hits.sort(key=lambda d: d["@timestamp"], reverse=True)
        aggs: dict[str, Any] = {}
        for name, agg in (body.get("aggs") or {}).items():
            if "terms" in agg:
                counts: dict[str, int] = {}
                for d in hits:
                    key = self._get(d, agg["terms"]["field"])
                    counts[key] = counts.get(key, 0) + 1
                top = sorted(counts.items(), key=lambda kv: -kv[1])[: agg["terms"].get("size", 10)]
                aggs[name] = {"buckets": [{"key": k, "doc_count": n} for k, n in top]}
            elif "date_histogram" in agg:
                minutes: dict[str, int] = {}
                for d in sorted(hits, key=lambda d: d["@timestamp"]):
                    key = d["@timestamp"][:16] + ":00.000Z"
                    minutes[key] = minutes.get(key, 0) + 1
                aggs[name] = {"buckets": [{"key_as_string": k, "doc_count": n} for k, n in minutes.items()]}
        size = int(body.get("size", 10))
        shown = [{"_index": "insight-es-k8s-logs-2026.11.25", "_source":
                  {k: self._get(d, k) for k in body.get("_source") or []} if body.get("_source") else d}
                 for d in hits[:size]]
        answer: dict[str, Any] = {"took": 1, "timed_out": False,
                                  "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                                  "hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": shown}}
        if aggs:
            answer["aggregations"] = aggs
        return JSONResponse(answer)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{index}/_search", self.search, methods=["POST"])])
