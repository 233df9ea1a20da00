"""GET /incidents, GET /incidents/{id}, GET /actions, POST /actions/{id}/approve|reject.

Reads answer from the :class:`~streams.api.incidents_view.IncidentsView`, for the tenant of the
caller's token only: a tenant token (``tenants.<t>.token``, the one /events and /webhook take) or an
API approver token (``approvals.api_tokens.<t>.<name>``). Another tenant's incident is 404, never 403,
so ids do not tell what exists elsewhere.

Decisions take an API approver token only and go through the chat channels' own steps
(:data:`streams.api.approvals.ApprovalSteps`): the action from the shared actions view, the tenant,
the approver list (``api:<name>`` in ``approvals.approvers.<t>``), still awaiting approval and not
expired, one decision per action across replicas (the approvals topic), then a decision signed with
the approval key, ``channel="api"``. Refusals answer 4xx with a ``reason`` and are kept in dead-letter,
from where the audit agent chains them, exactly like a refused Slack click.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from schemas.records import Decision, IncidentState
from schemas.tenant_label import TenantLabels
from streams.api.approvals import ApprovalSteps
from streams.api.claims import claim_digest
from streams.api.edge import read_model
from streams.api.errors import RefusedError
from streams.api.incidents_models import (
    ActionPage,
    DecisionRequest,
    DecisionResponse,
    IncidentDetail,
    IncidentPage,
    ShownState,
    WhoAmI,
)
from streams.api.incidents_timeline import action_summary, incident_detail, incident_summary
from streams.api.incidents_view import IncidentsView
from streams.errors import ConfigurationError
from streams.stages.approval import RejectionReason

#: The channel (``via``) of decisions taken through this API.
CHANNEL = "api"
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_ACTION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="rcaflow"'}
T = TypeVar("T")


class ApproverTokens:
    """API approver credentials: tenant -> approver name -> token. ``who`` names the holder of a bearer token.

    Guarantees: every token is compared in constant time against every configured one (timing does not
    tell which exist); an approver name that could not be an identity is refused at start-up.
    """

    def __init__(self, tokens: Mapping[str, Mapping[str, SecretStr]]) -> None:
        self._tokens: list[tuple[str, str, bytes]] = []
        for tenant, people in tokens.items():
            for name, token in people.items():
                if not _NAME.fullmatch(name):
                    raise ConfigurationError(f"approvals.api_tokens.{tenant}: approver name {name!r} must match "
                                     f"{_NAME.pattern}")
                self._tokens.append((tenant, name, token.get_secret_value().encode()))

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def who(self, authorization: str | None) -> tuple[str, str] | None:
        """(tenant, ``api:<name>``) of the bearer token, or None when it is no approver's."""
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        offered = credentials.strip().encode()
        found = None
        for tenant, name, token in self._tokens:
            if hmac.compare_digest(offered, token):
                found = (tenant, f"{CHANNEL}:{name}")
        return found


def _encode_cursor(moment: datetime, ident: str) -> str:
    raw = f"{int(moment.timestamp() * 1000)}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        millis, _, ident = raw.partition("|")
        return int(millis), ident
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise HTTPException(400, "cursor: not a cursor this API returned") from exc


def _page(items: Sequence[T], key: Callable[[T], tuple[datetime, str]], limit: int,
          cursor: str | None) -> tuple[list[T], str | None]:
    """Newest first; the cursor is the sort key of the last item returned (stable while records arrive)."""
    ordered = sorted(items, key=lambda i: (int(key(i)[0].timestamp() * 1000), key(i)[1]), reverse=True)
    if cursor is not None:
        after = _decode_cursor(cursor)
        ordered = [i for i in ordered if (int(key(i)[0].timestamp() * 1000), key(i)[1]) < after]
    page = ordered[:limit]
    more = len(ordered) > limit
    return page, (_encode_cursor(*key(page[-1])) if more and page else None)


def build_incidents_router(
    *,
    view: IncidentsView,
    approver_tokens: ApproverTokens,
    steps: ApprovalSteps | None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> APIRouter:
    """The incident API. ``steps`` None: no approval key configured, so the decision routes answer 404
    ``not_configured`` (reads still work)."""
    router = APIRouter(tags=["incidents"])

    def reader(request: Request) -> str:
        """The tenant a read speaks for: an approver's token is also a read token of its tenant."""
        authorization = request.headers.get("authorization")
        who = approver_tokens.who(authorization)
        if who is not None:
            return who[0]
        tenant: str = request.app.state.auth.tenant_for(authorization)
        return tenant

    @router.get("/whoami", response_model=WhoAmI)
    async def whoami(request: Request) -> WhoAmI:
        """The tenant the token reads, and the approver identity it decides as (null: it only reads)."""
        who = approver_tokens.who(request.headers.get("authorization"))
        return WhoAmI(tenant=reader(request), approver=who[1] if who is not None and steps is not None else None)

    @router.get("/incidents", response_model=IncidentPage)
    async def list_incidents(
        request: Request,
        state: IncidentState | None = None,
        alert_class: Annotated[str | None, Query(alias="class", max_length=100)] = None,
        cluster: Annotated[str | None, Query(max_length=253)] = None,
        since: Annotated[datetime | None, Query(description="active at or after (last_seen_at)")] = None,
        until: Annotated[datetime | None, Query(description="opened at or before")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> IncidentPage:
        """The caller's tenant's incidents, newest opened first, filtered by state, class, cluster and time."""
        tenant = reader(request)
        chosen = []
        for snap in view.incidents(tenant):
            incident = snap.incident
            if state is not None and incident.state is not state:
                continue
            if alert_class is not None and incident.alert_class != alert_class:
                continue
            if cluster is not None and incident.event.labels.get("cluster") != cluster:
                continue
            if since is not None and incident.last_seen_at < _aware(since):
                continue
            if until is not None and incident.opened_at > _aware(until):
                continue
            chosen.append(snap)
        page, next_cursor = _page(chosen, lambda s: (s.incident.opened_at, s.incident.incident_id), limit, cursor)
        return IncidentPage(items=[incident_summary(s, view) for s in page], next_cursor=next_cursor)

    @router.get("/incidents/{incident_id}", response_model=IncidentDetail,
                responses={404: {"description": "no such incident for this tenant (or older than the view keeps)"}})
    async def get_incident(incident_id: str, request: Request) -> IncidentDetail:
        """One incident with its timeline: alerts, evidence (exact queries and results), diagnoses, actions,
        approvals (who, when, via), outcomes, rollbacks and audit steps."""
        tenant = reader(request)
        snap = view.incident(tenant, incident_id)
        if snap is None:
            raise HTTPException(404, f"no incident {incident_id[:200]!r} for tenant {tenant!r}")
        return incident_detail(snap, view)

    @router.get("/actions", response_model=ActionPage)
    async def list_actions(
        request: Request,
        state: ShownState | None = None,
        alert_class: Annotated[str | None, Query(alias="class", max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=400)] = None,
    ) -> ActionPage:
        """The caller's tenant's actions by their latest state (``?state=awaiting_approval``: what waits for
        a human; ``?state=dry-run``: dry runs that went through), newest first."""
        tenant = reader(request)
        actions = [a for a in view.latest_actions(tenant)
                   if (state is None or a.outcome == state) and (alert_class is None or a.alert_class == alert_class)]
        page, next_cursor = _page(actions, lambda a: (a.at, a.action_id), limit, cursor)
        return ActionPage(items=[action_summary(a) for a in page], next_cursor=next_cursor)

    async def decide(action_id: str, request: Request, decision: Decision) -> JSONResponse:
        if steps is None:
            return JSONResponse({"detail": "API approvals are not configured: give the approver a token "
                                           "(RCAFLOW_APPROVALS__API_TOKENS__<TENANT>__<NAME>) and list api:<name> in "
                                           "approvals.approvers.<tenant> (docs/incidents-api.md)",
                                 "reason": RejectionReason.NOT_CONFIGURED.value}, status_code=404)
        try:
            who = approver_tokens.who(request.headers.get("authorization"))
            if who is None:
                tenant = _tenant_or_none(request)
                if tenant is not None:
                    raise steps.refuse(RejectionReason.UNKNOWN_APPROVER,
                                       f"api: this token reads tenant {tenant!r}; deciding needs an API approver "
                                       "token (approvals.api_tokens)", CHANNEL, tenant=tenant, action_id=action_id)
                raise steps.refuse(RejectionReason.BAD_SIGNATURE, "api: missing or unknown approver token", CHANNEL)
            tenant, approver = who
            if not _ACTION_ID.fullmatch(action_id):
                raise steps.refuse(RejectionReason.MALFORMED, "api: not an action id", CHANNEL, tenant=tenant,
                                   approver=approver)
            body = await read_model(request, DecisionRequest) if await request.body() else DecisionRequest()
            action = steps.action(action_id, CHANNEL, tenant=tenant, approver=approver)
            steps.check_approver(action, approver, CHANNEL)
            steps.check_open(action, CHANNEL, approver)
            # One decision per approver and action, across replicas (the worker names a duplicate "replayed").
            claim_id = claim_digest(CHANNEL, action.tenant, action.action_id, approver)
            now = clock()
            steps.once(claim_id, channel=CHANNEL, expires_at=max(action.expires_at or now, now) + timedelta(days=1),
                       tenant=action.tenant, action_id=action.action_id, approver=approver)
            record = await steps.decide(action, decision, approver, CHANNEL, _CONTROL.sub(" ", body.reason).strip(),
                                        claim_id=claim_id)
        except RefusedError as refused:
            response = await steps.answer(refused)
            if response.status_code == 401:
                response.headers.update(_CHALLENGE)
            return response
        return JSONResponse(DecisionResponse(ok=True, action_id=record.action_id, decision=record.decision.value,
                                             approver=record.approver).model_dump())

    def _tenant_or_none(request: Request) -> str | None:
        """The tenant of a read token, if the caller sent one (to say why it cannot decide); never raises."""
        auth = request.app.state.auth
        if not auth.enabled:
            return None
        try:
            tenant: str = auth.tenant_for(request.headers.get("authorization"))
        except HTTPException:
            return None
        return tenant

    refusals: dict[int | str, dict[str, object]] = {
        code: {"description": text} for code, text in (
            (401, "no or an unknown approver token (bad_signature)"),
            (403, "not an approver of the action's tenant (unknown_approver, wrong_tenant)"),
            (404, "unknown action (unknown_action) or API approvals not configured (not_configured)"),
            (409, "already decided, or this approver already decided it (already_decided, replayed)"),
            (410, "the approval window closed (expired) or the incident resolved (withdrawn)"),
            (503, "broker unavailable: nothing was recorded, retry"),
        )}

    @router.post("/actions/{action_id}/approve", response_model=DecisionResponse, responses=refusals,
                 openapi_extra={"requestBody": {"required": False, "content": {
                     "application/json": {"schema": DecisionRequest.model_json_schema()}}}})
    async def approve(action_id: str, request: Request) -> JSONResponse:
        """Approve an action awaiting approval, as an API approver of its tenant (``Authorization: Bearer``)."""
        return await decide(action_id, request, Decision.APPROVE)

    @router.post("/actions/{action_id}/reject", response_model=DecisionResponse, responses=refusals,
                 openapi_extra={"requestBody": {"required": False, "content": {
                     "application/json": {"schema": DecisionRequest.model_json_schema()}}}})
    async def reject(action_id: str, request: Request) -> JSONResponse:
        """Reject an action awaiting approval, as an API approver of its tenant."""
        return await decide(action_id, request, Decision.REJECT)

    return router


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class PendingApprovalsCollector:
    """``rcaflow_pending_approvals{tenant}``: actions whose latest state is awaiting_approval, from the view,
    computed at scrape time (every replica reads every action, so each reports the same numbers). ``tenant`` is
    a configured tenant (0 when none waits) or ``_other`` (schemas.tenant_label)."""

    def __init__(self, view: IncidentsView, tenants: Iterable[str] = ()) -> None:
        self._view = view
        self._label = TenantLabels.of(tenants)

    def collect(self) -> list[object]:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily("rcaflow_pending_approvals",
                                  "Actions awaiting approval, per tenant (the API's incident view)",
                                  labels=["tenant"])
        counts = dict.fromkeys(self._label.tenants, 0)
        for tenant, count in self._view.awaiting_by_tenant().items():
            label = self._label(tenant)
            counts[label] = counts.get(label, 0) + count
        for label, count in sorted(counts.items()):
            gauge.add_metric([label], count)
        return [gauge]

    def describe(self) -> list[object]:
        return self.collect()
