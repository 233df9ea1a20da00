"""Runs an ExecutorService that SIGKILLs its own process at one of the executor's crash windows.

Used by test_executor_crash_windows.py. The test registry implements ``diagnostics.collect`` (a policy
action the real verifier lets through when signed with :data:`DECISION_KEY`) with an operation whose effect
is a line appended (and fsynced) to a file, so the test can count how often an action really ran across
processes. Run as ``python -m tests.integration.flow.crashing_executor <bootstrap> <topic prefix>
<marks file>`` from the repository root. ``CRASH_WINDOW`` (environment, read by both copies of this module:
``__main__`` and the one the tool registry imports) is one of ``none``, ``after-running`` (the action's
running record acked, the effect not done), ``after-effect`` (the effect done, no outcome written) or
``after-outcome`` (its outcome acked, the offset not committed yet); ``CRASH_ACTION`` names the action;
``ABANDON_MARGIN_S`` (default 2) is how long past its confirm window and stop grace a run left ``running``
may still belong to a live executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from executors import ConfirmPolicy, ToolRegistry
from executors.base import ActionSpec, Executor, RunContext, ToolResult
from executors.params import Namespace, ObjectName, Params
from executors.registry import DEFAULT_TOOLS
from policies.decision_signature import DecisionKeys
from policies.loader import load_policies
from policies.tenant_scope import TenantScope, scopes_of
from producers.publisher import Delivery, KafkaPublisher
from schemas.codec import make_codec
from schemas.records import ActionEvent, ActionState, Record, Risk
from schemas.topics import TopicSpec
from streams.executor.service import ExecutorService
from streams.executor.verify import ActionVerifier

#: The decision key the test signs approvals with and these executors verify them with.
DECISION_KEY = DecisionKeys.from_text("crash-window-tests-decision-key-0123456789")
#: The namespace every test action targets, the one the tenants may write to.
NAMESPACE = "insight-system"


def collect(tenant: str, action_id: str, state: ActionState = ActionState.APPROVED,
            at: datetime | None = None) -> ActionEvent:
    """A signed ``collect_diagnostics`` action of ``log_flood`` (risk read, approved by the policy itself)."""
    action = ActionEvent(tenant=tenant, action_id=action_id, incident_id="inc-1", alert_class="log_flood",
                         name="collect_diagnostics", tool="diagnostics", operation="collect",
                         params={"namespace": NAMESPACE, "workload": "fluent-bit-x7k2p"}, risk=Risk.READ,
                         state=state, dry_run=False, at=at or datetime.now(UTC))
    return DECISION_KEY.sign(action, decided_at=datetime.now(UTC), valid_for=timedelta(hours=1))

WINDOWS = ("none", "after-running", "after-effect", "after-outcome")
_CRASH = {"window": os.environ.get("CRASH_WINDOW", "none"), "action": os.environ.get("CRASH_ACTION", "")}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class MarkParams(Params):
    namespace: Namespace
    workload: ObjectName


class MarkFile(Executor[MarkParams]):
    """A test operation whose only effect is one fsynced line per run in the marks file."""

    spec = ActionSpec(name="diagnostics.collect", description="append one line per run to a file (tests only)",
                      params=MarkParams, risk=Risk.READ)
    backend = "marks"

    def __init__(self, path: Path) -> None:
        self._path = path

    @classmethod
    def from_backend(cls, backend: object | None) -> MarkFile:
        return cls(Path(str(backend)))

    async def _run(self, params: MarkParams, ctx: RunContext) -> ToolResult:
        hold = self._path.with_name(self._path.name + ".hold")
        while hold.exists():  # the test holds the effect back until it has set the broker up
            await asyncio.sleep(0.05)
        with self._path.open("a") as marks:
            marks.write(f"{ctx.action_id}\n")
            marks.flush()
            os.fsync(marks.fileno())
        if _CRASH.get("window") == "after-effect" and ctx.action_id == _CRASH.get("action"):
            _die()
        return ToolResult(output=f"marked {params.namespace}/{params.workload}")


class CrashingPublisher:
    """The Publisher seam with a fault: dies like ``kill -9`` right after the broker acked a chosen record."""

    def __init__(self, inner: KafkaPublisher) -> None:
        self._inner = inner

    async def publish(self, spec: TopicSpec, key: str, record: Record) -> Delivery:
        delivery = await self._inner.publish(spec, key, record)
        if isinstance(record, ActionEvent) and record.action_id == _CRASH.get("action"):
            window = _CRASH.get("window")
            if (window == "after-running" and record.state is ActionState.RUNNING) or (
                window == "after-outcome" and record.state in (ActionState.SUCCEEDED, ActionState.FAILED)
            ):
                _die()
        return delivery

    async def close(self) -> None:
        await self._inner.close()


async def main() -> None:
    bootstrap, prefix, marks = sys.argv[1:4]
    if _CRASH["window"] not in WINDOWS:
        raise SystemExit(f"CRASH_WINDOW must be one of {WINDOWS}, not {_CRASH['window']!r}")
    codec = make_codec(None)
    inner = KafkaPublisher(bootstrap, codec, prefix)
    registry = ToolRegistry({"marks": marks}, tools={
        **DEFAULT_TOOLS, "diagnostics.collect": "tests.integration.flow.crashing_executor:MarkFile"})
    verifier = ActionVerifier(DECISION_KEY, load_policies(), approvers={},
                              scopes=scopes_of([TenantScope(tenant="t", namespaces=(NAMESPACE,))]),
                              registry=CollectorRegistry())
    # Short windows so a settled "interrupted" shows within seconds of the restart (defaults: minutes).
    service = ExecutorService(bootstrap=bootstrap, codec=codec, publisher=CrashingPublisher(inner), registry=registry,
                              verifier=verifier,
                              topic_prefix=prefix, dry_run=False, confirm=ConfirmPolicy(within_s=1.0, every_s=0.1),
                              stop_grace_s=1.0, abandon_margin_s=float(os.environ.get("ABANDON_MARGIN_S", "2")))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, service.stop)
    try:
        await service.run()
    finally:
        await inner.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
