"""Is a workload's rollout finished? The same reading of ``status`` as ``kubectl rollout status``.

An accepted PATCH only records the wish; the controller then replaces pods and
can hang on ones that never become ready. These functions read one GET of the
workload and say done, still converging (with kubectl's wording, so the
on-call reader recognises it) or failed for good.
"""

from __future__ import annotations

from typing import Any

from executors.base import Check
from executors.params import ScalableKind, WorkloadKind


def rollout_check(kind: WorkloadKind, obj: dict[str, Any]) -> Check:
    name = f"{kind.value} {_meta(obj).get('namespace', '?')}/{_meta(obj).get('name', '?')}"
    status, spec = _section(obj, "status"), _section(obj, "spec")
    if _int(status, "observedGeneration") < _int(_meta(obj), "generation"):
        return Check(False, f"waiting for the {kind.value} spec update to be observed")
    if kind is WorkloadKind.DEPLOYMENT:
        return _deployment(name, spec, status)
    if kind is WorkloadKind.STATEFULSET:
        return _statefulset(name, spec, status)
    return _daemonset(name, spec, status)


def scale_check(kind: ScalableKind, obj: dict[str, Any], replicas: int) -> Check:
    """Done when exactly ``replicas`` pods exist and are ready (available for a Deployment)."""
    name = f"{kind.value} {_meta(obj).get('namespace', '?')}/{_meta(obj).get('name', '?')}"
    status = _section(obj, "status")
    if _int(status, "observedGeneration") < _int(_meta(obj), "generation"):
        return Check(False, f"waiting for the {kind.value} spec update to be observed")
    ready = _int(status, "availableReplicas" if kind is ScalableKind.DEPLOYMENT else "readyReplicas")
    current = _int(status, "replicas")
    if ready < replicas:
        return Check(False, f"{ready} of {replicas} replicas of {name} are ready")
    if current > replicas:
        return Check(False, f"{current - replicas} surplus replicas of {name} are pending termination")
    return Check(True, f"{name} has {replicas} ready replicas")


def _deployment(name: str, spec: dict[str, Any], status: dict[str, Any]) -> Check:
    for condition in status.get("conditions") or []:
        if (isinstance(condition, dict) and condition.get("type") == "Progressing"
                and condition.get("reason") == "ProgressDeadlineExceeded"):
            return Check(False, f"{name} exceeded its progress deadline", failed=True)
    want = _int(spec, "replicas", 1)
    updated, current, available = (_int(status, k) for k in ("updatedReplicas", "replicas", "availableReplicas"))
    if updated < want:
        return Check(False, f"{updated} out of {want} new replicas of {name} have been updated")
    if current > updated:
        return Check(False, f"{current - updated} old replicas of {name} are pending termination")
    if available < updated:
        return Check(False, f"{available} of {updated} updated replicas of {name} are available")
    return Check(True, f"{name} successfully rolled out")


def _statefulset(name: str, spec: dict[str, Any], status: dict[str, Any]) -> Check:
    strategy = _section(spec, "updateStrategy")
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return Check(True, f"{name} uses updateStrategy {strategy.get('type')}: pods change only when deleted")
    want = _int(spec, "replicas", 1)
    ready = _int(status, "readyReplicas")
    if ready < want:
        return Check(False, f"waiting for {want - ready} pods of {name} to be ready")
    partition = _int(_section(strategy, "rollingUpdate"), "partition")
    if partition > 0:
        updated = _int(status, "updatedReplicas")
        if updated < want - partition:
            return Check(False, f"{updated} of {want - partition} pods of {name} above the partition are updated")
        return Check(True, f"{name} partitioned roll out complete")
    if status.get("updateRevision") != status.get("currentRevision"):
        return Check(False, f"waiting for the rolling update of {name} to complete "
                            f"({_int(status, 'updatedReplicas')} of {want} pods at the new revision)")
    return Check(True, f"{name} rolling update complete, {ready} pods ready")


def _daemonset(name: str, spec: dict[str, Any], status: dict[str, Any]) -> Check:
    strategy = _section(spec, "updateStrategy")
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return Check(True, f"{name} uses updateStrategy {strategy.get('type')}: pods change only when deleted")
    desired = _int(status, "desiredNumberScheduled")
    updated, available = _int(status, "updatedNumberScheduled"), _int(status, "numberAvailable")
    if updated < desired:
        return Check(False, f"{updated} out of {desired} new pods of {name} have been updated")
    if available < desired:
        return Check(False, f"{available} of {desired} updated pods of {name} are available")
    return Check(True, f"{name} successfully rolled out")


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return _section(obj, "metadata")


def _section(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _int(obj: dict[str, Any], key: str, default: int = 0) -> int:
    value = obj.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default
