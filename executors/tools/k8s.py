"""Kubernetes operations: rollout restart (and its undo), delete pod, scale, annotate pod (and its undo).

Each is idempotent by action id where Kubernetes lets us be: a restart stamps
the action id into the pod template and is skipped if it is already there;
scale and annotate are set-to-value. With a cluster configured, a dry run is
the API server's own ``?dryRun=All`` (admission and RBAC included); without
one, it is a description of the request we would send.

Each change is read-decide-write with optimistic concurrency: the patch
carries the ``resourceVersion`` that was read, so the API server refuses it
(409) if the object moved in between, and the whole step is tried again on a
fresh read (client-go's ``RetryOnConflict``). A decision such as "already
restarted by this action" is thus never taken on a stale object.

Restart and scale record what they changed from, and after a real run they
can be watched until the rollout finishes (``_check``), so a restart whose new
pods never become ready can be undone: putting the pod template's restart
annotations back makes the controller return to the previous revision, which
is what ``kubectl rollout undo`` does.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from executors.base import ActionSpec, Check, Executor, P, Rollback, RunContext, ToolResult
from executors.errors import ToolNotConfiguredError, UpstreamError
from executors.params import (
    ActionIdOrEmpty,
    AnnotationKey,
    AnnotationValue,
    Namespace,
    ObjectName,
    Params,
    Replicas,
    RestartStamp,
    ScalableKind,
    WorkloadKind,
)
from executors.tools.k8s_api import K8sApi, Permission, permissions, retry_on_conflict
from executors.tools.k8s_rollout import rollout_check, scale_check
from schemas.records import Risk

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
#: Stamped next to restartedAt so a redelivered action does not restart twice.
ACTION_ANNOTATION = "rcaflow.io/action-id"


class K8sExecutor(Executor[P]):
    backend = "k8s"
    #: The RBAC rules the operation needs, its confirmation check included: the executor's Role is the union
    #: over the policy's operations and their rollbacks (deploy/kubernetes; tests/unit/deploy check it).
    rbac: ClassVar[frozenset[Permission]] = frozenset()

    def __init__(self, api: K8sApi | None) -> None:
        self.api = api

    @classmethod
    def from_backend(cls, backend: object | None) -> Self:
        if backend is not None and not isinstance(backend, K8sApi):
            raise TypeError(f"{cls.spec.name} needs a K8sApi backend, got {type(backend).__name__}")
        return cls(backend)

    def require_api(self, ctx: RunContext) -> K8sApi | None:
        """The API, or None for a description-only dry run; a real run without a cluster fails."""
        if self.api is None and not ctx.dry_run:
            raise ToolNotConfiguredError(f"{self.spec.name}: no Kubernetes cluster is configured")
        return self.api


def _preview(ctx: RunContext, text: str, api: K8sApi | None) -> str:
    if not ctx.dry_run:
        return text
    if api is None:
        return f"dry run (no cluster configured): would {text}"
    return f"server-side dry run accepted: would {text}"


# ----------------------------------------------------------------------------- rollout_restart


class RolloutRestartParams(Params):
    namespace: Namespace
    kind: WorkloadKind
    name: ObjectName


class RolloutRestart(K8sExecutor[RolloutRestartParams]):
    spec = ActionSpec(
        name="k8s.rollout_restart",
        description=(
            "Rolling restart of a Deployment, StatefulSet or DaemonSet, like `kubectl rollout restart`: "
            "patches the pod template's kubectl.kubernetes.io/restartedAt annotation."
        ),
        params=RolloutRestartParams,
        risk=Risk.LOW,
    )
    rbac = permissions("apps", "deployments statefulsets daemonsets", "get patch")

    async def _run(self, params: RolloutRestartParams, ctx: RunContext) -> ToolResult:
        api = self.require_api(ctx)
        target = f"{params.kind.value} {params.namespace}/{params.name}"
        stamp = ctx.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        if api is None:
            return ToolResult(_preview(ctx, f"PATCH {K8sApi.workload_path(params.namespace, params.kind, params.name)}"
                                       f" setting {RESTARTED_AT}={stamp} (restart {target})", None))
        return await retry_on_conflict(lambda: self._restart(api, params, ctx, target, stamp))

    async def _restart(self, api: K8sApi, params: RolloutRestartParams, ctx: RunContext, target: str,
                       stamp: str) -> ToolResult:
        current = await api.get_workload(params.namespace, params.kind, params.name)
        annotations = _dig(current, "spec", "template", "metadata", "annotations")
        if annotations.get(ACTION_ANNOTATION) == ctx.action_id:
            return ToolResult(
                f"{target} was already restarted by action {ctx.action_id} "
                f"(restartedAt={annotations.get(RESTARTED_AT, '?')}); nothing to do"
            )
        previous_stamp, previous_action = annotations.get(RESTARTED_AT), annotations.get(ACTION_ANNOTATION)
        undo = Rollback(name=UndoRestart.spec.name, params={
            "namespace": params.namespace, "kind": params.kind.value, "name": params.name,
            "restarted_at": previous_stamp if isinstance(previous_stamp, str) else "",
            "previous_action": previous_action if isinstance(previous_action, str) else "",
        })
        # The action id changes the template even when restartedAt does not (two restarts in one second).
        patch = _versioned(current, {
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp,
                                                               ACTION_ANNOTATION: ctx.action_id}}}}})
        await api.patch_workload(params.namespace, params.kind, params.name, patch, dry_run=ctx.dry_run)
        return ToolResult(_preview(ctx, f"restart {target} (restartedAt={stamp})", api), rollback=undo)

    async def _check(self, params: RolloutRestartParams, ctx: RunContext) -> Check | None:
        if self.api is None:
            return None
        return rollout_check(params.kind, await self.api.get_workload(params.namespace, params.kind, params.name))


# ----------------------------------------------------------------------------- undo_restart


class UndoRestartParams(Params):
    namespace: Namespace
    kind: WorkloadKind
    name: ObjectName
    #: The restartedAt stamp before the restart; "" when there was none.
    restarted_at: RestartStamp
    previous_action: ActionIdOrEmpty


class UndoRestart(K8sExecutor[UndoRestartParams]):
    """Only reached as a rollback of a restart (automatic or `rcaflow rollback`); the policy catalogue lacks it."""

    spec = ActionSpec(
        name="k8s.undo_restart",
        description=(
            "Undo a rollout restart: put the pod template's restart annotations back to what they were, so the "
            "controller returns to the previous revision (what `kubectl rollout undo` does)."
        ),
        params=UndoRestartParams,
        risk=Risk.LOW,
    )
    rbac = permissions("apps", "deployments statefulsets daemonsets", "get patch")

    async def _run(self, params: UndoRestartParams, ctx: RunContext) -> ToolResult:
        api = self.require_api(ctx)
        target = f"{params.kind.value} {params.namespace}/{params.name}"
        restore = {RESTARTED_AT: params.restarted_at or None, ACTION_ANNOTATION: params.previous_action or None}
        shown = ", ".join(f"{k}={v or '(unset)'}" for k, v in restore.items())
        if api is None:
            path = K8sApi.workload_path(params.namespace, params.kind, params.name)
            return ToolResult(_preview(ctx, f"PATCH {path} restoring {shown} (undo the restart of {target})", None))

        async def attempt() -> ToolResult:
            current = await api.get_workload(params.namespace, params.kind, params.name)
            annotations = _dig(current, "spec", "template", "metadata", "annotations")
            if all(annotations.get(k) == v for k, v in restore.items()):
                return ToolResult(f"{target} already has {shown}; nothing to undo")
            patch = _versioned(current, {"spec": {"template": {"metadata": {"annotations": restore}}}})
            await api.patch_workload(params.namespace, params.kind, params.name, patch, dry_run=ctx.dry_run)
            return ToolResult(_preview(ctx, f"undo the restart of {target} (restored {shown})", api))

        return await retry_on_conflict(attempt)

    async def _check(self, params: UndoRestartParams, ctx: RunContext) -> Check | None:
        if self.api is None:
            return None
        return rollout_check(params.kind, await self.api.get_workload(params.namespace, params.kind, params.name))


# ----------------------------------------------------------------------------- delete_pod


class DeletePodParams(Params):
    namespace: Namespace
    pod: ObjectName


class DeletePod(K8sExecutor[DeletePodParams]):
    spec = ActionSpec(
        name="k8s.delete_pod",
        description="Delete one pod so its controller recreates it (graceful, default grace period).",
        params=DeletePodParams,
        risk=Risk.LOW,
    )
    rbac = permissions("", "pods", "delete")

    async def _run(self, params: DeletePodParams, ctx: RunContext) -> ToolResult:
        api = self.require_api(ctx)
        target = f"pod {params.namespace}/{params.pod}"
        if api is None:
            return ToolResult(_preview(ctx, f"DELETE {K8sApi.pod_path(params.namespace, params.pod)} ({target})",
                                       None))
        deleted = await api.delete_pod(params.namespace, params.pod, dry_run=ctx.dry_run)
        uid = _dig(deleted, "metadata").get("uid")
        return ToolResult(_preview(ctx, f"delete {target}" + (f" (uid {uid})" if uid else ""), api))


# ----------------------------------------------------------------------------- scale


class ScaleParams(Params):
    namespace: Namespace
    kind: ScalableKind
    name: ObjectName
    replicas: Replicas


class Scale(K8sExecutor[ScaleParams]):
    spec = ActionSpec(
        name="k8s.scale",
        description="Set the replica count of a Deployment or StatefulSet (0-100); "
        "the rollback scales back to the previous count.",
        params=ScaleParams,
        risk=Risk.LOW,
    )
    rbac = (permissions("apps", "deployments/scale statefulsets/scale", "get patch")
            | permissions("apps", "deployments statefulsets", "get"))

    async def _run(self, params: ScaleParams, ctx: RunContext) -> ToolResult:
        api = self.require_api(ctx)
        target = f"{params.kind.value} {params.namespace}/{params.name}"
        if api is None:
            path = K8sApi.workload_path(params.namespace, params.kind, params.name)
            return ToolResult(_preview(ctx, f"PATCH {path}/scale to {params.replicas} replicas ({target})", None))

        async def attempt() -> ToolResult:
            scale = await api.get_scale(params.namespace, params.kind, params.name)
            previous = _dig(scale, "spec").get("replicas", 0)
            if not isinstance(previous, int):
                raise UpstreamError(f"k8s scale of {target}: spec.replicas is not an integer")
            rollback = Rollback(
                name=self.spec.name,
                params={"namespace": params.namespace, "kind": params.kind.value, "name": params.name,
                        "replicas": str(previous)},
            )
            if previous == params.replicas:
                return ToolResult(f"{target} already has {previous} replicas; nothing to do")
            version = _dig(scale, "metadata").get("resourceVersion")
            await api.patch_scale(params.namespace, params.kind, params.name, params.replicas, dry_run=ctx.dry_run,
                                  resource_version=version if isinstance(version, str) else None)
            return ToolResult(
                _preview(ctx, f"scale {target} from {previous} to {params.replicas} replicas", api),
                rollback=rollback,
            )

        return await retry_on_conflict(attempt)

    async def _check(self, params: ScaleParams, ctx: RunContext) -> Check | None:
        if self.api is None:
            return None
        workload = await self.api.get_workload(params.namespace, params.kind, params.name)
        return scale_check(params.kind, workload, params.replicas)


# ----------------------------------------------------------------------------- annotate_pod


class AnnotatePodParams(Params):
    namespace: Namespace
    pod: ObjectName
    key: AnnotationKey
    value: AnnotationValue


class AnnotatePod(K8sExecutor[AnnotatePodParams]):
    spec = ActionSpec(
        name="k8s.annotate_pod",
        description="Set one annotation on a pod (e.g. DCE 5 Insight's log-collection opt-out during a log flood). "
        "Keys under kubernetes.io / k8s.io are refused.",
        params=AnnotatePodParams,
        risk=Risk.LOW,
    )
    rbac = permissions("", "pods", "get patch")

    async def _run(self, params: AnnotatePodParams, ctx: RunContext) -> ToolResult:
        api = self.require_api(ctx)
        target = f"pod {params.namespace}/{params.pod}"
        if api is None:
            path = K8sApi.pod_path(params.namespace, params.pod)
            return ToolResult(_preview(ctx, f"PATCH {path} setting annotation {params.key}={params.value!r}", None))

        async def attempt() -> ToolResult:
            pod = await api.get_pod(params.namespace, params.pod)
            previous = _dig(pod, "metadata", "annotations").get(params.key)
            where = {"namespace": params.namespace, "pod": params.pod, "key": params.key}
            if isinstance(previous, str):
                rollback = Rollback(name=self.spec.name, params={**where, "value": previous})
                note = ""
            else:
                rollback = Rollback(name=RemovePodAnnotation.spec.name, params=where)
                note = (f" (was unset; the rollback removes it, like "
                        f"`kubectl annotate pod -n {params.namespace} {params.pod} {params.key}-`)")
            if previous == params.value:
                return ToolResult(f"{target} already has {params.key}={params.value!r}; nothing to do")
            patch = _versioned(pod, {"metadata": {"annotations": {params.key: params.value}}})
            await api.patch_pod(params.namespace, params.pod, patch, dry_run=ctx.dry_run)
            return ToolResult(_preview(ctx, f"annotate {target} with {params.key}={params.value!r}{note}", api),
                              rollback=rollback)

        return await retry_on_conflict(attempt)


# ----------------------------------------------------------------------------- remove_pod_annotation


class RemovePodAnnotationParams(Params):
    namespace: Namespace
    pod: ObjectName
    key: AnnotationKey


class RemovePodAnnotation(K8sExecutor[RemovePodAnnotationParams]):
    """Only reached as a rollback of annotating an unset key (`rcaflow rollback`); not in the policy catalogue."""

    spec = ActionSpec(
        name="k8s.remove_pod_annotation",
        description="Remove one annotation from a pod, undoing k8s.annotate_pod of a key that was unset "
        "(`kubectl annotate pod <pod> <key>-`). Keys under kubernetes.io / k8s.io are refused.",
        params=RemovePodAnnotationParams,
        risk=Risk.LOW,
    )
    rbac = permissions("", "pods", "get patch")

    async def _run(self, params: RemovePodAnnotationParams, ctx: RunContext) -> ToolResult:
        api = self.require_api(ctx)
        target = f"pod {params.namespace}/{params.pod}"
        if api is None:
            path = K8sApi.pod_path(params.namespace, params.pod)
            return ToolResult(_preview(ctx, f"PATCH {path} removing annotation {params.key}", None))

        async def attempt() -> ToolResult:
            pod = await api.get_pod(params.namespace, params.pod)
            if params.key not in _dig(pod, "metadata", "annotations"):
                return ToolResult(f"{target} has no annotation {params.key}; nothing to do")
            # A JSON merge patch deletes a key by setting it to null (RFC 7386).
            patch = _versioned(pod, {"metadata": {"annotations": {params.key: None}}})
            await api.patch_pod(params.namespace, params.pod, patch, dry_run=ctx.dry_run)
            return ToolResult(_preview(ctx, f"remove annotation {params.key} from {target}", api))

        return await retry_on_conflict(attempt)


def _versioned(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` with the resourceVersion that was read: the API server answers 409 if the object moved since."""
    version = _dig(current, "metadata").get("resourceVersion")
    if not isinstance(version, str) or not version:
        return patch
    return {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": version}}


def _dig(obj: Any, *keys: str) -> dict[str, Any]:
    """``obj[k1][k2]…`` as a dict, or ``{}`` when any level is missing or not an object."""
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, dict) else {}
