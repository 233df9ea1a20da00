"""diagnostics.collect: a read-only summary of a workload's pods, recent events and log tails.

Bounded everywhere (pods, events, log lines, line length) because the summary
lands in a record and may be shown to an LLM.
"""

from __future__ import annotations

from typing import Any

from executors.base import ActionSpec, RunContext, ToolResult
from executors.errors import NotFoundError
from executors.params import Namespace, ObjectName, Params
from executors.tools.k8s import K8sExecutor
from executors.tools.k8s_api import permissions
from schemas.records import Risk

MAX_PODS = 5
MAX_EVENTS = 10
LOG_PODS = 2
LOG_LINES = 20
LINE_CHARS = 300


class CollectParams(Params):
    namespace: Namespace
    workload: ObjectName


def _owned_by(pod: dict[str, Any], workload: str) -> bool:
    """A pod named after the workload: ``name``, ``name-0`` (StatefulSet), ``name-<rs>-<id>`` (Deployment)."""
    name = str((pod.get("metadata") or {}).get("name", ""))
    return name == workload or name.startswith(workload + "-")


def _pod_line(pod: dict[str, Any]) -> str:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    restarts, reasons = 0, []
    for cs in status.get("containerStatuses") or []:
        restarts += int(cs.get("restartCount", 0) or 0)
        for phase in ("waiting", "terminated"):
            reason = ((cs.get("state") or {}).get(phase) or {}).get("reason")
            if reason:
                reasons.append(f"{cs.get('name', '?')}:{reason}")
            last = ((cs.get("lastState") or {}).get(phase) or {}).get("reason")
            if last:
                reasons.append(f"{cs.get('name', '?')}:last {last}")
    extra = f" [{', '.join(reasons)}]" if reasons else ""
    return f"- pod {meta.get('name')}: phase={status.get('phase', '?')} restarts={restarts}{extra}"


def _clip(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…"


class Collect(K8sExecutor[CollectParams]):
    spec = ActionSpec(
        name="diagnostics.collect",
        description="Read-only: list a workload's pods (phase, restarts, waiting/terminated reasons), its recent "
        f"events and the last {LOG_LINES} log lines of up to {LOG_PODS} pods.",
        params=CollectParams,
        risk=Risk.READ,
    )
    rbac = permissions("", "pods events", "list") | permissions("", "pods/log", "get")

    async def _run(self, params: CollectParams, ctx: RunContext) -> ToolResult:
        api = self.require_api(ctx)
        target = f"{params.namespace}/{params.workload}"
        if ctx.dry_run or api is None:
            return ToolResult(
                f"dry run: would read pods, events and the last {LOG_LINES} log lines for workload {target}"
            )
        pods = [p for p in await api.list_pods(params.namespace) if _owned_by(p, params.workload)]
        lines = [f"workload {target}: {len(pods)} pod(s)"]
        lines += [_pod_line(p) for p in pods[:MAX_PODS]]
        if len(pods) > MAX_PODS:
            lines.append(f"- … {len(pods) - MAX_PODS} more pod(s)")
        names = [params.workload] + [str(p["metadata"]["name"]) for p in pods[:MAX_PODS]]
        events: list[dict[str, Any]] = []
        for name in names:
            events += await api.list_events(params.namespace, name)
        events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)
        if events:
            lines.append("events (newest first):")
        for event in events[:MAX_EVENTS]:
            obj = event.get("involvedObject") or {}
            lines.append(_clip(
                f"- {event.get('type', '?')} {event.get('reason', '?')} {obj.get('kind', '?')}/{obj.get('name', '?')}"
                f" x{event.get('count', 1)}: {event.get('message', '')}"
            ))
        for pod in pods[:LOG_PODS]:
            name = str(pod["metadata"]["name"])
            try:
                log = await api.pod_log(params.namespace, name, tail_lines=LOG_LINES)
            except NotFoundError:
                continue  # pod went away between list and read: nothing to show, not a failure
            tail = log.splitlines()[-LOG_LINES:]
            lines.append(f"log tail of {name} ({len(tail)} line(s)):")
            lines += [_clip("  " + line) for line in tail]
        return ToolResult("\n".join(lines))
