"""POST /tools/{family}: the evidence tools for people and agents, and approved actions on request.

Reads (``prom``, ``k8s`` pods/events/logs/owners/describe, ``es``, ``netprobe``) run
at once and answer the ``Evidence`` record, failures included, exactly as the RCA
engine would see them. Writes (``k8s`` rollout_restart/delete_pod/scale/annotate_pod,
``http`` reload, ``alertmanager`` silence) only run for an action the policy
proposed and a person approved: the request names it (``action_id``) and must
repeat its tool, operation and params, so this endpoint can never do more than
the approval covered. They run as a dry run unless the router was built with
``dry_run=False``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, ValidationError

from executors.base import ExecutionOutcome, validation_message
from executors.errors import ExecutorError
from executors.evidence.base import EvidenceTool, Observation
from executors.execute import execute
from executors.registry import ToolRegistry
from schemas.operations import evidence_families
from schemas.records import ActionEvent, ActionState, Evidence, EvidenceStatus, Risk
from streams.api.actions_view import PendingActions
from streams.api.app import Tenant
from streams.api.claims import ClaimStore, InMemoryClaims
from streams.errors import StreamsError

logger = logging.getLogger(__name__)

#: Families of the read-only evidence tools (DESIGN.md: /tools/{prom,k8s,es,netprobe}), from the catalogue.
EVIDENCE_FAMILIES = evidence_families()
_ACTION_ID = r"^[A-Za-z0-9._:-]{1,200}$"
_OPERATION = r"^[a-z][a-z0-9_]{0,63}$"
#: How long a real run stays claimed, so two requests (or two clicks) cannot run one approval twice.
_RUN_MEMORY = timedelta(days=1)

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


OnExecuted = Callable[[ActionEvent, ExecutionOutcome], Awaitable[None]]


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


#: (tenant, tool family, params) → None when allowed, else why not. Backends are shared by the whole
#: deployment, so this is what keeps one tenant's token out of another tenant's namespaces.
Scope = Callable[[str, str, Mapping[str, str]], str | None]


def namespace_scope(allowed: Mapping[str, Sequence[str]]) -> Scope:
    """Tenants listed in ``allowed`` may only name matching namespaces (fnmatch patterns), and may not
    send free-form queries (prom, es), which cannot be confined to a namespace; others are unrestricted."""

    def check(tenant: str, family: str, params: Mapping[str, str]) -> str | None:
        patterns = allowed.get(tenant)
        if not patterns:
            return None
        if family in ("prom", "es"):
            return f"tenant {tenant} is limited to its namespaces; free-form {family} queries are not"
        namespace = params.get("namespace")
        if namespace is not None and not any(fnmatch.fnmatchcase(namespace, p) for p in patterns):
            return f"namespace {namespace!r} is not one of tenant {tenant}'s namespaces"
        return None

    return check


class _Tools:
    """The checks behind the route, in order: known operation → valid params → (writes) approved action."""

    def __init__(
        self,
        evidence: Mapping[str, EvidenceTool[Any]],
        registry: ToolRegistry | None,
        pending: PendingActions | None,
        *,
        dry_run: bool,
        claims: ClaimStore,
        call_timeout_s: float,
        on_executed: OnExecuted | None,
        clock: Callable[[], datetime],
        scope: Scope | None = None,
    ) -> None:
        self.scope = scope
        self.evidence = dict(evidence)
        self.registry = registry
        self.pending = pending
        self.dry_run = dry_run
        self.claims = claims
        self.call_timeout_s = call_timeout_s
        self.on_executed = on_executed
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
        if action.state is not ActionState.APPROVED:
            raise ToolRefusedError(403, "not_approved",
                              f"action {action.action_id} is {action.state.value}, not approved")
        if (action.tool, action.operation) != tuple(name.split(".", 1)):
            raise ToolRefusedError(403, "mismatch",
                              f"action {action.action_id} was approved for {action.tool}.{action.operation}, "
                              f"not {name}")
        expires_at = action.expires_at
        if not self.dry_run and expires_at is not None and self.clock() >= _aware(expires_at):
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

    async def run(self, action: ActionEvent, tenant: str) -> dict[str, Any]:
        now = self.clock()
        claim = f"tools-run|{action.tenant}|{action.action_id}"
        # A read-risk operation only reads: its "dry run" would describe, not read, so it always runs.
        reading = action.risk is Risk.READ
        real = not self.dry_run and not reading
        if real and not self.claims.claim(claim, expires_at=now + _RUN_MEMORY, now=now):
            raise ToolRefusedError(409, "already_run", f"action {action.action_id} was already run through this API")
        assert self.registry is not None
        outcome = await execute(action, registry=self.registry, dry_run=self.dry_run and not reading, now=now)
        if real and not outcome.ok and outcome.retriable:
            self.claims.release(claim)  # nothing happened for sure: the caller may try again
        logger.info("tools api: %s %s for action %s: %s", outcome.name, "previewed" if outcome.dry_run else "ran",
                    action.action_id, outcome.state.value,
                    extra={"tenant": tenant, "action_id": action.action_id})
        if self.on_executed is not None:
            await self.on_executed(action, outcome)
        return outcome.model_dump(mode="json")

    # ------------------------------------------------------------------ entry

    async def handle(self, family: str, request: ToolRequest, tenant: str) -> dict[str, Any]:
        if family not in self.families():
            raise ToolRefusedError(404, "unknown_tool", f"no tool family {family!r}; known: "
                              f"{', '.join(sorted(self.families()))}")
        name = f"{family}.{request.operation}"
        raw = request.text_params()
        if self.scope is not None:
            refusal = self.scope(tenant, family, raw)
            if refusal is not None:
                raise ToolRefusedError(403, "out_of_scope", refusal)
        tool = self.evidence.get(name)
        if tool is not None:
            return await self.observe(tool, raw, tenant)
        if self.registry is None or name not in self.registry:
            raise self.unknown(family, request.operation)
        self.validate_action_params(name, raw)
        if self.registry.spec(name).risk is Risk.READ:
            return await self.run(self.read_action(name, raw, tenant), tenant)
        return await self.run(self.approved(name, request, raw, tenant), tenant)


def build_tools_router(
    *,
    evidence: Mapping[str, EvidenceTool[Any]],
    registry: ToolRegistry | None = None,
    pending: PendingActions | None = None,
    dry_run: bool = True,
    claims: ClaimStore | None = None,
    call_timeout_s: float = 10.0,
    on_executed: OnExecuted | None = None,
    clock: Callable[[], datetime] = _utcnow,
    scope: Scope | None = None,
) -> APIRouter:
    """``POST /tools/{family}`` with ``{"operation", "params", "action_id"?}``, authenticated per tenant.

    ``evidence`` is :func:`executors.evidence.build_evidence_tools`'s map; ``registry`` (the
    executor's :class:`ToolRegistry`) and ``pending`` (the approvals view) enable the write
    operations. ``on_executed(action, outcome)`` is awaited after every run, dry runs
    included: publish ``outcome.to_action_event(...)`` and audit there. ``claims`` keeps a
    real run single-use (the default serves one replica).
    """
    core = _Tools(evidence, registry, pending, dry_run=dry_run, claims=claims or InMemoryClaims(),
                  call_timeout_s=call_timeout_s, on_executed=on_executed, clock=clock, scope=scope)
    router = APIRouter(prefix="/tools", tags=["tools"])

    @router.post("/{family}", response_model=None)
    async def run_tool(family: str, body: ToolRequest, tenant: Tenant) -> JSONResponse:
        """Run one read-only evidence operation, or (with an approved ``action_id``) one action."""
        try:
            return JSONResponse(await core.handle(family, body, tenant))
        except ToolRefusedError as refused:
            logger.info("tools api refused %s.%s: %s (%s)", family, body.operation, refused.reason,
                        refused.message, extra={"tenant": tenant, "action_id": body.action_id})
            return refused.response()

    return router
