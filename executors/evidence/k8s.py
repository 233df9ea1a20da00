"""k8s.pods / events / logs / owners / describe: read-only Kubernetes facts through the shared ``K8sApi``.

Every name is a validated DNS-1123 name, passed to the official client as a
parameter (which percent-encodes it into the path); selectors are validated
term by term, so nothing from an alert can add a path segment or a second
selector term. Each request is written to the ``RequestLog`` (method, path,
query) before it is sent.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

from pydantic import AfterValidator, Field, model_validator

from executors.base import ActionSpec
from executors.errors import InvalidParamsError, NotFoundError
from executors.evidence.base import EvidenceContext, EvidenceTool, Finding, RequestLog
from executors.params import Namespace, ObjectName, Params
from executors.tools.k8s_api import OWNER_KINDS, K8sApi, Permission, permissions
from schemas.records import Risk

MAX_PODS = 10
MAX_EVENTS = 10
LINE_CHARS = 300
MAX_TAIL = 1000
#: Bytes of log we let the API server send (``limitBytes``): a flooding pod must not flood us.
LOG_LIMIT_BYTES = 256 * 1024
MAX_OWNER_DEPTH = 4
_QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_SELECTOR_TERM = re.compile(rf"^(({_DNS_SUBDOMAIN})/)?{_QUALIFIED}(!?=|==)({_QUALIFIED})?$")
_SINCE_RE = re.compile(r"^(\d{1,4})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Digits and hex runs vary between repeats of one message; fold them to see what repeats.
_VARYING = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-f]{8,}\b|\d+")


def _selector(value: str) -> str:
    terms = value.split(",")
    if len(value) > 500 or not all(_SELECTOR_TERM.fullmatch(t) for t in terms):
        raise ValueError("must be a label selector of key=value / key!=value terms separated by ','")
    return value


def _since(value: str) -> str:
    match = _SINCE_RE.fullmatch(value)
    if not match or not 1 <= int(match.group(1)) * _UNITS[match.group(2)] <= 7 * 86400:
        raise ValueError("must look like 90s, 15m or 2h, at most 7d")
    return value


def _grep(value: str) -> str:
    if len(value) > 200:
        raise ValueError("must be at most 200 characters")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc.msg}") from None
    return value


Selector = Annotated[str, AfterValidator(_selector)]
Since = Annotated[str, AfterValidator(_since)]
Grep = Annotated[str, AfterValidator(_grep)]
Tail = Annotated[int, Field(ge=1, le=MAX_TAIL)]


class PodsParams(Params):
    namespace: Namespace
    selector: Selector | None = None
    name: ObjectName | None = None

    @model_validator(mode="after")
    def _one_target(self) -> PodsParams:
        if (self.selector is None) == (self.name is None):
            raise ValueError("give exactly one of selector or name")
        return self


class EventsParams(Params):
    namespace: Namespace
    name: ObjectName


class LogsParams(Params):
    namespace: Namespace
    pod: ObjectName
    container: ObjectName | None = None
    tail: Tail = 100
    since: Since | None = None
    grep: Grep | None = None


class PodParams(Params):
    namespace: Namespace
    pod: ObjectName


#: Query-text keys (``namespace=x pod=y``) that are spelled differently from the params.
_ALIASES = {"involvedObject.name": "name", "labelSelector": "selector", "tailLines": "tail"}


def parse_pairs(query: str) -> dict[str, str]:
    """``namespace=a pod=b grep=x|y`` → dict; a token without ``=`` or a repeated key is refused."""
    out: dict[str, str] = {}
    for token in query.split():
        key, sep, value = token.partition("=")
        key = _ALIASES.get(key, key)
        if not sep or not key:
            raise InvalidParamsError("query must be space-separated key=value pairs")
        if key in out:
            raise InvalidParamsError(f"key {key!r} given twice")
        out[key] = value
    return out


def _seg(value: str) -> str:
    return quote(value, safe="")


def _clip(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…"


def pod_line(pod: dict[str, Any]) -> tuple[str, int, bool]:
    """One line per pod, its restart count, and whether it is ready."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    restarts, reasons = 0, []
    for cs in status.get("containerStatuses") or []:
        restarts += int(cs.get("restartCount", 0) or 0)
        for where in ("state", "lastState"):
            for phase in ("waiting", "terminated"):
                reason = ((cs.get(where) or {}).get(phase) or {}).get("reason")
                if reason:
                    reasons.append(f"{cs.get('name', '?')}:{'last ' if where == 'lastState' else ''}{reason}")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    ready = ready or (status.get("phase") == "Running" and not status.get("conditions")
                      and all(cs.get("ready", True) for cs in status.get("containerStatuses") or []))
    extra = f" [{', '.join(reasons)}]" if reasons else ""
    return (f"- {meta.get('name')}: phase={status.get('phase', '?')} ready={str(ready).lower()} "
            f"restarts={restarts}{extra}", restarts, ready)


#: What reading an owner chain needs (read-only).
_OWNER_READS = permissions("apps", "replicasets deployments statefulsets daemonsets", "get") | permissions(
    "batch", "jobs cronjobs", "get")


class K8sEvidence(EvidenceTool[Any]):
    """Shared construction: every operation reads through the one injected ``K8sApi``."""

    #: The read-only RBAC rules the operation needs (the evidence ClusterRole is their union).
    rbac: ClassVar[frozenset[Permission]] = frozenset()

    def __init__(self, api: K8sApi) -> None:
        self.api = api

    def parse_query(self, query: str) -> dict[str, str]:
        return parse_pairs(query)

    def namespaces_in(self, query: str) -> tuple[str, ...] | None:
        namespace = parse_pairs(query).get("namespace")
        return (namespace,) if namespace else ()

    async def pod(self, namespace: str, pod: str, log: RequestLog) -> dict[str, Any]:
        log.sent("GET", f"/api/v1/namespaces/{_seg(namespace)}/pods/{_seg(pod)}", None)
        return await self.api.get_pod(namespace, pod)

    async def events(self, namespace: str, name: str, log: RequestLog, limit: int) -> list[dict[str, Any]]:
        log.sent("GET", f"/api/v1/namespaces/{_seg(namespace)}/events",
                 {"fieldSelector": f"involvedObject.name={name}", "limit": str(limit)})
        return await self.api.list_events(namespace, name, limit=limit)


class Pods(K8sEvidence):
    spec = ActionSpec(
        name="k8s.pods",
        description="List pods by namespace and label selector (or one pod by name): phase, readiness, restarts "
        "and waiting/terminated reasons. Value: pod count; extras: restarts, not_ready.",
        params=PodsParams,
        risk=Risk.READ,
    )
    rbac = permissions("", "pods", "get list")

    async def _gather(self, params: PodsParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        if params.name is not None:
            try:
                pods = [await self.pod(params.namespace, params.name, log)]
            except NotFoundError:
                return Finding(f"pod {params.namespace}/{params.name} not found", value=0.0, no_data=True)
        else:
            log.sent("GET", f"/api/v1/namespaces/{_seg(params.namespace)}/pods",
                     {"labelSelector": str(params.selector), "limit": "200"})
            pods = await self.api.list_pods(params.namespace, selector=str(params.selector), limit=200)
        if not pods:
            return Finding(f"no pods in {params.namespace} match {params.selector}", value=0.0, no_data=True)
        rows = [pod_line(p) for p in pods]
        rows.sort(key=lambda r: (r[2], -r[1]))  # not ready and most restarted first
        restarts = sum(r[1] for r in rows)
        not_ready = sum(1 for r in rows if not r[2])
        lines = [f"{len(rows)} pod(s) in {params.namespace}, {not_ready} not ready, {restarts} restart(s):"]
        lines += [r[0] for r in rows[:MAX_PODS]]
        if len(rows) > MAX_PODS:
            lines.append(f"- … {len(rows) - MAX_PODS} more")
        return Finding("\n".join(lines), value=float(len(rows)),
                       extra={"restarts": float(restarts), "not_ready": float(not_ready)})


def _event_time(event: dict[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {})
               .get("creationTimestamp") or "")


class Events(K8sEvidence):
    spec = ActionSpec(
        name="k8s.events",
        description="Events of one object (fieldSelector involvedObject.name), newest first. "
        "Value: warning events; extras: total.",
        params=EventsParams,
        risk=Risk.READ,
    )
    rbac = permissions("", "events", "list")

    async def _gather(self, params: EventsParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        found = await self.events(params.namespace, params.name, log, 200)
        events = sorted(found, key=_event_time, reverse=True)
        if not events:
            return Finding(f"no events for {params.namespace}/{params.name} (events expire after ~1h)",
                           value=0.0, extra={"total": 0.0}, no_data=True)
        warnings = sum(1 for e in events if e.get("type") == "Warning")
        reasons = Counter(str(e.get("reason", "?")) for e in events)
        lines = [f"{len(events)} event(s), {warnings} warning(s); reasons: "
                 + ", ".join(f"{r} x{n}" for r, n in reasons.most_common(5))]
        for event in events[:MAX_EVENTS]:
            obj = event.get("involvedObject") or {}
            lines.append(_clip(f"- {_event_time(event)} {event.get('type', '?')} {event.get('reason', '?')} "
                               f"{obj.get('kind', '?')}/{obj.get('name', '?')} x{event.get('count', 1)}: "
                               f"{event.get('message', '')}"))
        return Finding("\n".join(lines), value=float(warnings), extra={"total": float(len(events))})


def repeated_lines(lines: list[str], k: int = 5) -> list[tuple[str, int]]:
    """The k most repeated lines, with digits and hex folded so ``took 12ms`` and ``took 9ms`` count as one."""
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    for line in lines:
        shape = _VARYING.sub("#", line)
        counts[shape] += 1
        example.setdefault(shape, line)
    return [(example[shape], n) for shape, n in counts.most_common(k)]


class Logs(K8sEvidence):
    spec = ActionSpec(
        name="k8s.logs",
        description=f"Tail a pod's log (tailLines ≤ {MAX_TAIL}, limitBytes {LOG_LIMIT_BYTES}), optionally since a "
        "duration and filtered by a regex; shows the most repeated lines and the newest ones. "
        "Value: matching lines.",
        params=LogsParams,
        risk=Risk.READ,
    )
    rbac = permissions("", "pods/log", "get")

    async def _gather(self, params: LogsParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        path = f"/api/v1/namespaces/{_seg(params.namespace)}/pods/{_seg(params.pod)}/log"
        query = {"tailLines": str(params.tail), "limitBytes": str(LOG_LIMIT_BYTES)}
        since = int(params.since[:-1]) * _UNITS[params.since[-1]] if params.since else None
        if params.container:
            query["container"] = params.container
        if since is not None:
            query["sinceSeconds"] = str(since)
        log.sent("GET", path, query)
        text = await self.api.pod_log(params.namespace, params.pod, tail_lines=params.tail,
                                      limit_bytes=LOG_LIMIT_BYTES, container=params.container, since_seconds=since)
        lines = text.splitlines()[-params.tail:]
        if params.grep:
            pattern = re.compile(params.grep)
            lines = [line for line in lines if pattern.search(line[:4096])]
        where = f"{params.namespace}/{params.pod}" + (f" container {params.container}" if params.container else "")
        if not lines:
            what = f"matching /{params.grep}/ " if params.grep else ""
            return Finding(f"no log lines {what}in the last {params.tail} of {where}", value=0.0, no_data=True)
        out = [f"{len(lines)} line(s) from {where}; most repeated:"]
        out += [_clip(f"- x{n}: {line}") for line, n in repeated_lines(lines)]
        out.append("newest:")
        out += [_clip(f"  {line}") for line in lines[-5:]]
        return Finding("\n".join(out), value=float(len(lines)))


class Owners(K8sEvidence):
    spec = ActionSpec(
        name="k8s.owners",
        description="Follow a pod's controller ownerReferences to its workload (Pod → ReplicaSet → Deployment, "
        "StatefulSet, DaemonSet, Job → CronJob). Value: chain length.",
        params=PodParams,
        risk=Risk.READ,
    )
    rbac = permissions("", "pods", "get") | _OWNER_READS

    async def _gather(self, params: PodParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        pod = await self.pod(params.namespace, params.pod, log)
        chain = await self.chain(params.namespace, pod, log)
        return Finding(" → ".join(chain), value=float(len(chain)))

    async def chain(self, namespace: str, obj: dict[str, Any], log: RequestLog) -> list[str]:
        chain = [f"{obj.get('kind', 'Pod')}/{(obj.get('metadata') or {}).get('name', '?')}"]
        for _ in range(MAX_OWNER_DEPTH):
            refs = (obj.get("metadata") or {}).get("ownerReferences") or []
            ref = next((r for r in refs if isinstance(r, dict) and r.get("controller")), None)
            if ref is None:
                break
            kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
            chain.append(f"{kind}/{name}")
            if kind not in OWNER_KINDS:
                break  # a custom controller: its kind is named, we do not read arbitrary APIs
            group, resource = OWNER_KINDS[kind]
            try:
                log.sent("GET", f"{group}/namespaces/{_seg(namespace)}/{resource}/{_seg(name)}", None)
                obj = await self.api.get_owner(namespace, kind, name)
            except NotFoundError:
                chain[-1] += " (gone)"
                break
        return chain


class Describe(Owners):
    spec = ActionSpec(
        name="k8s.describe",
        description="A pod at a glance: phase, readiness, restarts and reasons, its owner chain and newest events.",
        params=PodParams,
        risk=Risk.READ,
    )
    rbac = permissions("", "pods", "get") | permissions("", "events", "list") | _OWNER_READS

    async def _gather(self, params: PodParams, ctx: EvidenceContext, log: RequestLog) -> Finding:
        pod = await self.pod(params.namespace, params.pod, log)
        line, restarts, ready = pod_line(pod)
        chain = await self.chain(params.namespace, pod, log)
        lines = [line.removeprefix("- "), "owners: " + " → ".join(chain)]
        events = sorted(await self.events(params.namespace, params.pod, log, 50), key=_event_time, reverse=True)
        lines += [_clip(f"- {e.get('type', '?')} {e.get('reason', '?')}: {e.get('message', '')}")
                  for e in events[:5]]
        return Finding("\n".join(lines), value=float(restarts), extra={"ready": 1.0 if ready else 0.0})
