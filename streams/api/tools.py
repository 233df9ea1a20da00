"""POST /tools/{family}: the evidence tools for people and agents, and approved actions on request.

Every call is scoped by the calling tenant (``policies.tenant_scope``): a namespace or
cluster outside it is a 403 with the reason; ``netprobe`` reaches only the deployment's
named targets, never a host:port from the request.

Reads (``prom``, ``k8s`` pods/events/logs/owners/describe, ``es``, ``netprobe``) run
at once in this process and answer the ``Evidence`` record, failures included, exactly
as the RCA engine would see them. Writes (``k8s`` rollout_restart/delete_pod/scale/
annotate_pod, ``http`` reload, ``alertmanager`` silence) only for an action the policy
proposed and a person approved: the request names it (``action_id``) and must repeat
its tool, operation and params. They never run here: the approved record goes (again)
on the actions topic, the executor runs it once whatever the number of replicas or
requests (its ledger), and the answer is the executor's outcome as read back from the
topic, or 202 and where to follow it when that takes longer than the wait.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, ValidationError

from executors.base import validation_message
from executors.errors import ExecutorError
from executors.evidence.base import EvidenceTool, Observation
from executors.execute import execute
from executors.registry import ToolRegistry
from policies.tenant_scope import OUTSIDE, TenantScope
from producers.publisher import Publisher, PublishError
from schemas.operations import evidence_families
from schemas.records import ActionEvent, ActionState, Evidence, EvidenceStatus, Risk
from schemas.topics import ACTIONS
from streams.api.actions_view import PendingActions
from streams.api.app import Tenant
from streams.api.edge import read_model
from streams.api.outcomes import FINAL_STATES, ActionOutcomes
from streams.errors import StreamsError

logger = logging.getLogger(__name__)

#: Families of the read-only evidence tools (DESIGN.md: /tools/{prom,k8s,es,netprobe}), from the catalogue.
EVIDENCE_FAMILIES = evidence_families()
_ACTION_ID = r"^[A-Za-z0-9._:-]{1,200}$"
_OPERATION = r"^[a-z][a-z0-9_]{0,63}$"
#: Families whose reads are free-form queries (PromQL, ES query text) that no namespace can confine.
_FREE_FORM = frozenset({"prom", "es"})
#: Where a caller follows an action that did not finish within the wait.
FOLLOW_PATH = "/tools/actions/{action_id}"

ParamValue = Annotated[str, StringConstraints(max_length=8192)] | StrictInt | StrictBool


class ToolRequest(BaseModel):
    """The body of every /tools call. ``params`` values are strings (ints and booleans are accepted
    and sent on as their text, like ``ActionEvent.params``)."""

    model_config = ConfigDict(extra="forbid")

    operation: Annotated[str, Field(pattern=_OPERATION)]
    params: Annotated[dict[str, ParamValue], Field(max_length=32)] = Field(default_factory=dict)
    action_id: Annotated[str, Field(pattern=_ACTION_ID)] | None = None

    def text_params(self) -> dict[str, str]:
        return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in self.params.items()}


class ToolRefusedError(StreamsError):
    """A request this router answers with a 4xx; ``reason`` is a stable word clients may switch on."""

    def __init__(self, status: int, reason: str, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.errors = errors

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"detail": self.message, "reason": self.reason}
        if self.errors is not None:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Each bad field as ``params.<name>`` with pydantic's message, never the (untrusted) value."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        out.append({"field": f"params.{loc}" if loc else "params", "error": err["msg"]})
    return out


def read_refusal(scope: TenantScope | None, tenant: str, family: str, params: Mapping[str, str]) -> str | None:
    """Why ``tenant`` may not run this read, or None. Backends are shared by the whole deployment, so
    this is what keeps one tenant's token out of another tenant's namespaces."""
    if scope is None:
        return f"{OUTSIDE}: tenant {tenant} has no scope configured, so it may read nothing"
    if scope.scoped and family in _FREE_FORM:
        return (f"{OUTSIDE}: tenant {tenant} is limited to its namespaces; free-form {family} queries cannot be "
                "confined to them")
    return scope.why_not_read(cluster=params.get("cluster"), namespace=params.get("namespace"))


def write_refusal(scope: TenantScope | None, tenant: str, params: Mapping[str, str]) -> str | None:
    """Why ``tenant`` may not have this approved action run, or None (checked again here, not only at approval)."""
    if scope is None:
        return f"{OUTSIDE}: tenant {tenant} has no scope configured, so it may change nothing"
    return scope.why_not_write(cluster=params.get("cluster"), namespace=params.get("namespace"))


class _Tools:
    """The checks behind the route, in order: known operation → valid params → (writes) approved action."""

    def __init__(
        self,
        evidence: Mapping[str, EvidenceTool[Any]],
        registry: ToolRegistry | None,
        pending: PendingActions | None,
        *,
        scopes: Mapping[str, TenantScope],
        netprobe_targets: Collection[str],
        executor: ExecutorPath | None,
        call_timeout_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self.scopes = scopes
        self.netprobe_targets = frozenset(netprobe_targets)
        self.evidence = dict(evidence)
        self.registry = registry
        self.pending = pending
        self.executor = executor
        self.call_timeout_s = call_timeout_s
        self.clock = clock

    def families(self) -> frozenset[str]:
        actions = {name.partition(".")[0] for name in self.registry.names()} if self.registry else set()
        return EVIDENCE_FAMILIES | actions

    def operations(self, family: str) -> list[str]:
        names = set(self.evidence) | set(self.registry.names() if self.registry else ())
        return sorted(n.partition(".")[2] for n in names if n.partition(".")[0] == family)

    def unknown(self, family: str, operation: str) -> ToolRefusedError:
        known = self.operations(family)
        if not known:
            return ToolRefusedError(404, "not_configured", f"no {family} tools are configured in this deployment")
        return ToolRefusedError(404, "unknown_operation",
                           f"unknown {family} operation {operation!r}; known here: {', '.join(known)}")

    # ------------------------------------------------------------------ reads

    async def observe(self, tool: EvidenceTool[Any], raw: dict[str, str], tenant: str) -> dict[str, Any]:
        try:
            tool.validate(raw)
        except ExecutorError as exc:
            cause = exc.__cause__
            errors = _field_errors(cause) if isinstance(cause, ValidationError) else None
            raise ToolRefusedError(422, "invalid_params", exc.message, errors) from exc
        name = tool.spec.name
        try:
            async with asyncio.timeout(self.call_timeout_s):
                observation = await tool.observe(raw, now=self.clock())
        except TimeoutError:
            observation = Observation(
                Evidence(tool=tool.spec.tool, operation=tool.spec.operation,
                         query=" ".join(f"{k}={v}" for k, v in sorted(raw.items()))[:5000],
                         status=EvidenceStatus.ERROR, summary=f"{name} timed out",
                         error=f"{name}: no answer within {self.call_timeout_s:g}s"),
                {},
            )
        evidence = observation.evidence
        logger.info("tools api: %s → %s", name, evidence.status.value, extra={"tenant": tenant})
        return {**evidence.model_dump(mode="json"), "values": dict(observation.values)}

    # ------------------------------------------------------------------ writes

    def validate_action_params(self, name: str, raw: dict[str, str]) -> None:
        assert self.registry is not None
        try:
            self.registry.spec(name).params.model_validate(raw)
        except ValidationError as exc:
            raise ToolRefusedError(422, "invalid_params", f"invalid params for {name}: {validation_message(exc)}",
                              _field_errors(exc)) from exc
        except ExecutorError as exc:
            raise ToolRefusedError(404, "not_available", exc.message) from exc

    def approved(self, name: str, request: ToolRequest, raw: dict[str, str], tenant: str) -> ActionEvent:
        """The approved action this request runs; every refusal is a 403 that says what is missing."""
        if request.action_id is None:
            raise ToolRefusedError(403, "approval_required",
                              f"{name} changes the cluster: give the action_id of an approved action")
        action = self.pending.get(request.action_id) if self.pending is not None else None
        if action is None or action.tenant != tenant:
            # Another tenant's action is reported as unknown: ids of other tenants stay private.
            raise ToolRefusedError(403, "unknown_action",
                              f"no action {request.action_id!r} is known for this tenant (yet)")
        if action.state not in _RUNNABLE:
            raise ToolRefusedError(403, "not_approved",
                              f"action {action.action_id} is {action.state.value}, not approved")
        if (action.tool, action.operation) != tuple(name.split(".", 1)):
            raise ToolRefusedError(403, "mismatch",
                              f"action {action.action_id} was approved for {action.tool}.{action.operation}, "
                              f"not {name}")
        expires_at = action.expires_at
        if expires_at is not None and self.clock() >= _aware(expires_at):
            raise ToolRefusedError(403, "expired", f"the approval of action {action.action_id} ran out at "
                                   f"{expires_at.isoformat()}")
        if action.params != raw:
            differing = sorted(k for k in set(action.params) | set(raw) if action.params.get(k) != raw.get(k))
            raise ToolRefusedError(403, "mismatch",
                              f"params differ from what action {action.action_id} was approved with: "
                              f"{', '.join(differing)}")
        return action

    def read_action(self, name: str, raw: dict[str, str], tenant: str) -> ActionEvent:
        """A read-risk action (diagnostics.collect) needs no approval: it is described by this request alone."""
        tool, _, operation = name.partition(".")
        return ActionEvent(
            tenant=tenant, action_id=f"tools-{uuid.uuid4().hex[:16]}", incident_id="tools-api",
            alert_class="adhoc", name=name, tool=tool, operation=operation, params=raw, risk=Risk.READ,
            state=ActionState.APPROVED, dry_run=False, reason="requested through POST /tools",
            at=self.clock(),
        )

    async def run_read(self, action: ActionEvent, tenant: str) -> dict[str, Any]:
        """A read-risk operation runs here (it only reads; its "dry run" would describe, not read)."""
        assert self.registry is not None
        outcome = await execute(action, registry=self.registry, dry_run=False, now=self.clock())
        logger.info("tools api: %s ran for %s: %s", outcome.name, action.action_id, outcome.state.value,
                    extra={"tenant": tenant, "action_id": action.action_id})
        return outcome.model_dump(mode="json")

    # ------------------------------------------------------------------ entry

    def check_read_scope(self, family: str, raw: Mapping[str, str], tenant: str) -> None:
        refusal = read_refusal(self.scopes.get(tenant), tenant, family, raw)
        if refusal is not None:
            raise ToolRefusedError(403, "out_of_scope", refusal)
        if family == "netprobe":
            target = raw.get("target", "")
            if target not in self.netprobe_targets:
                # Only targets the deployment named: a free host:port would make this a port scanner.
                raise ToolRefusedError(403, "unknown_target",
                                       f"netprobe reaches only the configured targets "
                                       f"({', '.join(sorted(self.netprobe_targets)) or 'none configured'}), "
                                       "never a host:port")

    async def handle(self, family: str, request: ToolRequest, tenant: str) -> tuple[int, dict[str, Any]]:
        if family not in self.families():
            raise ToolRefusedError(404, "unknown_tool", f"no tool family {family!r}; known: "
                              f"{', '.join(sorted(self.families()))}")
        name = f"{family}.{request.operation}"
        raw = request.text_params()
        tool = self.evidence.get(name)
        if tool is not None:
            self.check_read_scope(family, raw, tenant)
            return 200, await self.observe(tool, raw, tenant)
        if self.registry is None or name not in self.registry:
            raise self.unknown(family, request.operation)
        self.validate_action_params(name, raw)
        if self.registry.spec(name).risk is Risk.READ:
            self.check_read_scope(family, raw, tenant)
            return 200, await self.run_read(self.read_action(name, raw, tenant), tenant)
        action = self.approved(name, request, raw, tenant)
        refusal = write_refusal(self.scopes.get(tenant), tenant, action.params)
        if refusal is not None:
            raise ToolRefusedError(403, "out_of_scope", refusal)
        if action.state in FINAL_STATES:
            return 200, _answer(action)  # it already ran (in the executor): its outcome, never a second run
        if self.executor is None:
            raise ToolRefusedError(503, "no_executor_path",
                                   "writes run only in the executor, and this API has no broker to reach it")
        return await self.executor.run(action)

    def follow(self, action_id: str, tenant: str) -> dict[str, Any]:
        """The latest known state of one of the tenant's actions (where a 202 points)."""
        action = self.pending.get(action_id) if self.pending is not None else None
        if action is None or action.tenant != tenant:
            raise ToolRefusedError(404, "unknown_action", f"no action {action_id!r} is known for this tenant (yet)")
        return _answer(action)


#: States in which a /tools write request is taken: approved (not run yet) or already on its way / done,
#: in which case the caller gets the executor's answer rather than a second run.
_RUNNABLE = frozenset({ActionState.APPROVED, ActionState.RUNNING, ActionState.SUCCEEDED, ActionState.FAILED,
                       ActionState.ROLLED_BACK})


def _answer(action: ActionEvent) -> dict[str, Any]:
    """What a caller learns of an action: its state as the executor wrote it, and its result."""
    return {
        "action_id": action.action_id, "name": action.name, "tool": action.tool, "operation": action.operation,
        "params": dict(action.params), "state": action.outcome, "dry_run": action.dry_run,
        "result": action.result, "at": action.at.isoformat(), "ran_by": "executor",
        "follow": FOLLOW_PATH.format(action_id=action.action_id),
    }


class ExecutorPath:
    """Writes go to the executor: publish the approved record, wait for its outcome on the feed.

    Publishing the approved record again is safe by construction: it is exactly the record already on
    the topic (a Kafka redelivery looks the same), and the executor's ledger runs an action id once.
    The decider's signature (policies/decision_signature.py) travels with it unchanged, so the executor
    verifies it as it verifies the original; the API holds no decision key and signs nothing, so a
    compromised API replica can ask for a decided action again but never forge a decision.
    """

    def __init__(self, publisher: Publisher, outcomes: ActionOutcomes, *, wait_s: float,
                 publish_timeout_s: float = 10.0) -> None:
        self.publisher = publisher
        self.outcomes = outcomes
        self.wait_s = wait_s
        self.publish_timeout_s = publish_timeout_s

    async def run(self, action: ActionEvent) -> tuple[int, dict[str, Any]]:
        with self.outcomes.waiter(action.tenant, action.action_id) as outcome:
            if action.state is ActionState.APPROVED:
                try:
                    async with asyncio.timeout(self.publish_timeout_s):
                        await self.publisher.publish(ACTIONS, f"{action.tenant}:{action.action_id}", action)
                except (PublishError, TimeoutError) as exc:
                    raise ToolRefusedError(503, "broker_unavailable",
                                           f"could not hand action {action.action_id} to the executor: {exc}") from exc
                logger.info("tools api: handed %s to the executor", action.action_id,
                            extra={"tenant": action.tenant, "action_id": action.action_id})
            try:
                async with asyncio.timeout(self.wait_s):
                    final = await outcome
            except TimeoutError:
                body = _answer(action)
                body["detail"] = (f"the executor has not finished action {action.action_id} within {self.wait_s:g}s; "
                                  f"follow it at {body['follow']}")
                return 202, body
        return 200, _answer(final)


def build_tools_router(
    *,
    evidence: Mapping[str, EvidenceTool[Any]],
    scopes: Mapping[str, TenantScope],
    registry: ToolRegistry | None = None,
    pending: PendingActions | None = None,
    executor: ExecutorPath | None = None,
    netprobe_targets: Collection[str] = (),
    call_timeout_s: float = 10.0,
    clock: Callable[[], datetime] = _utcnow,
) -> APIRouter:
    """``POST /tools/{family}`` with ``{"operation", "params", "action_id"?}``, authenticated per tenant,
    and ``GET /tools/actions/{action_id}`` to follow a write.

    ``evidence`` is :func:`executors.evidence.build_evidence_tools`'s map; ``scopes`` is
    ``streams.wiring.runtime.build_scopes`` (a tenant missing there may read and change nothing);
    ``registry`` validates write params and runs read-risk actions; ``pending`` (the actions
    view) and ``executor`` enable the writes, which run only in the executor.
    """
    core = _Tools(evidence, registry, pending, scopes=scopes, netprobe_targets=netprobe_targets,
                  executor=executor, call_timeout_s=call_timeout_s, clock=clock)
    router = APIRouter(prefix="/tools", tags=["tools"])

    @router.get("/actions/{action_id}", response_model=None)
    async def follow_action(action_id: str, tenant: Tenant) -> JSONResponse:
        """Where a write that took longer than the wait is followed: the action's latest state."""
        try:
            return JSONResponse(core.follow(action_id, tenant))
        except ToolRefusedError as refused:
            return refused.response()

    # The tenant is resolved before the body is read (see streams.api.edge).
    @router.post("/{family}", response_model=None,
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": ToolRequest.model_json_schema()}}}})
    async def run_tool(family: str, request: Request, tenant: Tenant) -> JSONResponse:
        """One read-only evidence operation, or (with an approved ``action_id``) one action, run by the executor."""
        body = await read_model(request, ToolRequest)
        try:
            status, answer = await core.handle(family, body, tenant)
            return JSONResponse(answer, status_code=status)
        except ToolRefusedError as refused:
            logger.info("tools api refused %s.%s: %s (%s)", family[:40], body.operation, refused.reason,
                        refused.message, extra={"tenant": tenant, "action_id": body.action_id})
            return refused.response()

    return router
