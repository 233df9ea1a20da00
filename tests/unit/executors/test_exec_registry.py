"""The registry and the execute() entry point: fixed operation names, one-entry extension, clear failures."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from executors import (
    DEFAULT_TOOLS,
    AuditChain,
    ExecutionOutcome,
    Executor,
    ToolRegistry,
    audit_outcome,
    execute,
    verify,
)
from executors.base import ActionSpec, RunContext, ToolResult
from executors.errors import ToolNotConfiguredError, UnknownToolError
from executors.params import Namespace, Params
from schemas.records import ActionState, AuditKind, Risk
from tests.unit.executors.exec_helpers import NOW, action

AGREED = {
    "k8s.rollout_restart", "k8s.delete_pod", "k8s.scale", "k8s.annotate_pod",
    "http.reload", "alertmanager.silence", "diagnostics.collect",
    # Not in the policy catalogue: inverses, only run as the automatic rollback of a restart,
    # of annotating a key that was unset, and of a silence.
    "k8s.undo_restart", "k8s.remove_pod_annotation", "alertmanager.expire_silence",
}


def test_registry_holds_exactly_the_agreed_operations_and_each_resolves() -> None:
    registry = ToolRegistry()
    assert set(registry.names()) == AGREED
    for spec in registry.specs():
        assert spec.name in AGREED and spec.description
        assert spec.risk in (Risk.READ, Risk.LOW)
    assert registry.spec("diagnostics.collect").risk is Risk.READ


class EchoParams(Params):
    namespace: Namespace


class Echo(Executor[EchoParams]):
    """A tool defined outside the package: adding one is a class plus one registry entry."""

    spec = ActionSpec(name="echo.say", description="says the namespace", params=EchoParams, risk=Risk.READ)

    async def _run(self, params: EchoParams, ctx: RunContext) -> ToolResult:
        return ToolResult(f"{ctx.tenant}/{params.namespace} dry_run={ctx.dry_run}")


def run(registry: ToolRegistry, name: str, params: dict[str, str], **kw: object) -> ExecutionOutcome:
    return asyncio.run(execute(action(name, params, **kw), registry=registry, dry_run=False, now=NOW))


def test_a_new_tool_is_one_entry() -> None:
    registry = ToolRegistry(tools={**DEFAULT_TOOLS, "echo.say": f"{__name__}:Echo"})
    outcome = run(registry, "echo.say", {"namespace": "insight-system"}, risk=Risk.READ)
    assert outcome.ok and outcome.output == "acme/insight-system dry_run=False"
    assert outcome.name == "echo.say" and outcome.action_id == "act-1"


def test_unknown_operation_fails_with_the_list_of_known_ones() -> None:
    outcome = run(ToolRegistry(), "k8s.drain_node", {"node": "n1"})
    assert outcome.state is ActionState.FAILED and outcome.error_type == "UnknownToolError"
    assert "'k8s.drain_node'" in outcome.output and "k8s.delete_pod" in outcome.output


def test_unknown_params_are_refused() -> None:
    registry = ToolRegistry(tools={"echo.say": f"{__name__}:Echo"})
    outcome = run(registry, "echo.say", {"namespace": "a", "command": "rm -rf /"}, risk=Risk.READ)
    assert outcome.state is ActionState.FAILED and "command: Extra inputs are not permitted" in outcome.output
    assert "rm -rf" not in outcome.output


def test_entry_whose_module_is_missing_says_not_available() -> None:
    registry = ToolRegistry(tools={"es.query": "executors.tools.not_installed:Query"})
    with pytest.raises(ToolNotConfiguredError, match=r"es\.query is not available"):
        registry.get("es.query")


def test_entry_pointing_at_the_wrong_class_is_refused() -> None:
    with pytest.raises(UnknownToolError, match=r"declares 'echo\.say'"):
        ToolRegistry(tools={"echo.other": f"{__name__}:Echo"}).get("echo.other")
    with pytest.raises(UnknownToolError, match="not an Executor"):
        ToolRegistry(tools={"echo.x": f"{__name__}:EchoParams"}).get("echo.x")


def test_backend_of_the_wrong_type_is_a_wiring_error() -> None:
    with pytest.raises(TypeError, match="needs a K8sApi"):
        ToolRegistry({"k8s": object()}).get("k8s.delete_pod")


def test_outcome_becomes_the_next_action_record() -> None:
    registry = ToolRegistry(tools={"echo.say": f"{__name__}:Echo"})
    approved = action("echo.say", {"namespace": "a"}, risk=Risk.READ)
    outcome = asyncio.run(execute(approved, registry=registry, dry_run=True, now=NOW))
    later = NOW + timedelta(seconds=2)
    record = outcome.to_action_event(approved, at=later)
    assert record.state is ActionState.SUCCEEDED and record.dry_run
    assert record.result == "acme/a dry_run=True" and record.at == later
    assert record.action_id == approved.action_id and record.params == approved.params


def test_long_output_is_bounded() -> None:
    class Loud(Echo):
        async def _run(self, params: EchoParams, ctx: RunContext) -> ToolResult:
            return ToolResult("x" * 10_000)

    outcome = asyncio.run(Loud().run(action("echo.say", {"namespace": "a"}, risk=Risk.READ), dry_run=False))
    assert len(outcome.output) < 4100 and outcome.output.endswith("6000 more characters cut]")


def test_an_outcome_is_audited_on_the_tenants_chain() -> None:
    registry = ToolRegistry(tools={"echo.say": f"{__name__}:Echo"})
    approved = action("echo.say", {"namespace": "a"}, risk=Risk.READ)
    failed = action("echo.say", {"namespace": "Not_Valid"}, risk=Risk.READ, action_id="act-2")
    chain = AuditChain("acme")
    records = [
        audit_outcome(chain, a, asyncio.run(execute(a, registry=registry, dry_run=False, now=NOW)), at=NOW)
        for a in (approved, failed)
    ]
    assert verify(records) == []
    assert records[0].kind is AuditKind.EXECUTION and records[0].subject_id == "act-1"
    assert records[0].detail["state"] == "succeeded" and records[0].detail["incident_id"] == "inc-1"
    assert records[1].detail["state"] == "failed" and records[1].detail["error_type"] == "InvalidParamsError"
    with pytest.raises(ValueError, match="globex"):
        audit_outcome(AuditChain("globex"), approved, asyncio.run(
            execute(approved, registry=registry, dry_run=True, now=NOW)))
