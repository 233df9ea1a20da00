"""One knowledge-base document per incident, folded from the records of four topics; pure, no I/O.

The consumer reads incidents, rca-result, actions and approvals in whatever order Kafka hands
them out, and a replay into a fresh index must give the same documents. So every fold here is
order-independent and idempotent: a field comes from the record that wins a fixed rule (lowest
incident count for what the alert said, highest for how it ended, newest ``produced_at`` per
engine, the first time each action state was seen), never from "the last record applied", and
applying a record twice changes nothing. The derived fields (resolution, "fixed by", timings,
the searchable text) are recomputed from the kept facts after every fold.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from schemas.records import ActionEvent, ActionState, AlertStatus, ApprovalDecision, Engine, Incident, RcaResult

KIND_INCIDENT = "incident"
KIND_APPROVAL = "approval"
_TENANT_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: How far an action got; a later state never loses to an earlier one whatever order they arrive in.
_RANK = {
    ActionState.UNKNOWN: 0, ActionState.PROPOSED: 1, ActionState.AWAITING_APPROVAL: 2, ActionState.APPROVED: 3,
    ActionState.REJECTED: 3, ActionState.EXPIRED: 3, ActionState.WITHDRAWN: 3, ActionState.RUNNING: 4,
    ActionState.SUCCEEDED: 5, ActionState.FAILED: 5, ActionState.ROLLED_BACK: 6,
}
_MAX_TEXT = 4000


def tenant_slug(tenant: str) -> str:
    """The tenant as an index-name part: itself when it is a safe lower-case name, else ``_`` + a hash.

    No slug contains ``.``, which separates it from the month: the pattern ``<prefix>-acme.*`` never
    matches tenant ``acme-prod``'s indices, and a hashed slug (``_…``) never equals a plain one.
    """
    if _TENANT_SLUG.fullmatch(tenant):
        return tenant
    return "_" + hashlib.sha256(tenant.encode("utf-8")).hexdigest()[:24]


def tenant_pattern(prefix: str, tenant: str) -> str:
    """Every month index of one tenant, and only that tenant's."""
    return f"{prefix}-{tenant_slug(tenant)}.*"


def index_name(prefix: str, tenant: str, moment: datetime) -> str:
    """``<prefix>-<tenant>.<YYYY.MM>``: whole months are deleted for retention (no ILM in every distribution)."""
    return f"{prefix}-{tenant_slug(tenant)}.{_utc(moment):%Y.%m}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _clip(text: str, limit: int = _MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def new_document(tenant: str, incident_id: str) -> dict[str, Any]:
    return {"kind": KIND_INCIDENT, "tenant": tenant, "incident_id": incident_id, "actions": [], "diagnosis": {}}


# --------------------------------------------------------------------------- folds


def fold_incident(doc: dict[str, Any], incident: Incident) -> dict[str, Any]:
    """What the alert said comes from the lowest count seen; how it stands, from the highest."""
    event = incident.event
    fold = doc.setdefault("fold", {})
    opening = fold.get("opening_count")
    if opening is None or incident.count < opening:
        fold["opening_count"] = incident.count
        doc.update({
            "fingerprint": incident.fingerprint,
            "alert": event.alert,
            "alert_class": incident.alert_class,
            "severity": event.severity,
            "labels": dict(sorted(event.labels.items())),
            "label_pairs": sorted(f"{k}={v}" for k, v in event.labels.items()),
            "mail_subject": event.raw.mail_subject,
            "opened_at": _iso(incident.opened_at),
        })
    latest = fold.get("latest")
    mine = {"count": incident.count, "seen": _iso(incident.last_seen_at), "status": event.status.value}
    if latest is None or (mine["count"], mine["seen"]) > (latest["count"], latest["seen"]):
        fold["latest"] = mine
    return doc


def fold_rca(doc: dict[str, Any], result: RcaResult) -> dict[str, Any]:
    """Per engine the newest answer wins (ties: the lexically larger diagnosis, so the order never matters)."""
    fold_incident(doc, result.incident)
    engine = result.engine.value
    current = doc["diagnosis"].get(engine)
    produced = _iso(result.produced_at)
    if current is not None and (current["produced_at"], current["diagnosis"]) >= (produced, result.diagnosis):
        return doc
    entry: dict[str, Any] = {
        "diagnosis": _clip(result.diagnosis), "cause": _clip(result.cause), "confidence": result.confidence,
        "produced_at": produced, "proposed": sorted(a.name for a in result.actions),
    }
    if result.engine is Engine.LLM:
        entry.update({"model": result.model, "latency_ms": result.latency_ms, "tokens": result.tokens})
    else:
        entry["evidence"] = [
            {"tool": e.tool, "operation": e.operation, "status": e.status.value, "summary": _clip(e.summary, 600)}
            for e in result.evidence
        ]
    doc["diagnosis"][engine] = entry
    return doc


def fold_action(doc: dict[str, Any], action: ActionEvent) -> dict[str, Any]:
    """Each action keeps the first time it reached each state; its state is the furthest one reached."""
    actions: list[dict[str, Any]] = doc.setdefault("actions", [])
    entry = next((a for a in actions if a["action_id"] == action.action_id), None)
    if entry is None:
        entry = {"action_id": action.action_id, "name": action.name, "tool": action.tool,
                 "operation": action.operation, "params": dict(sorted(action.params.items())),
                 "risk": action.risk.value, "states": {}, "dry_run": action.dry_run}
        actions.append(entry)
        actions.sort(key=lambda a: a["action_id"])
    if not doc.get("alert_class"):
        doc["alert_class"] = action.alert_class
    at = _iso(action.at)
    seen = entry["states"].get(action.state.value)
    if seen is None or (at or "") < seen:
        entry["states"][action.state.value] = at
    if action.rollback_of:
        entry["rollback_of"] = action.rollback_of
    if action.approver and action.state in (ActionState.APPROVED, ActionState.REJECTED):
        entry["approver"] = action.approver
    if action.state in (ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK):
        entry["dry_run"] = action.dry_run
        outcome = entry.setdefault("outcomes", {})
        outcome[action.state.value] = _clip(action.result or "", 600)
    entry["state"] = max(entry["states"], key=lambda s: (_RANK[ActionState(s)], entry["states"][s]))
    return doc


def approval_document(decision: ApprovalDecision) -> tuple[str, dict[str, Any]]:
    """An approval decision as its own document: it names its action, not its incident (the incident's
    document gets its approver from the action's approved/rejected record, which carries it)."""
    key = "\x1f".join((decision.action_id, decision.channel, decision.approver, _iso(decision.decided_at) or ""))
    doc_id = f"approval-{hashlib.sha256(key.encode()).hexdigest()[:24]}"
    return doc_id, {"kind": KIND_APPROVAL, "tenant": decision.tenant, "action_id": decision.action_id,
                    "decision": decision.decision.value, "approver": decision.approver,
                    "channel": decision.channel, "decided_at": _iso(decision.decided_at),
                    "reason": _clip(decision.reason, 600)}


# --------------------------------------------------------------------------- derived fields


def finish(doc: dict[str, Any]) -> dict[str, Any]:
    """Recompute everything derived from the kept facts (so it cannot depend on the order of the folds)."""
    latest = doc.get("fold", {}).get("latest")
    opened = _parse(doc.get("opened_at"))
    if latest is not None:
        doc["count"], doc["last_seen_at"] = latest["count"], latest["seen"]
    resolved = latest is not None and latest["status"] == AlertStatus.RESOLVED.value
    resolved_at = _parse(latest["seen"]) if resolved and latest is not None else None
    doc["status"] = "resolved" if resolved else "open"
    doc["resolved_at"] = _iso(resolved_at)
    approvers = sorted({a["approver"] for a in doc.get("actions", []) if a.get("approver")})
    doc["approvers"] = approvers
    doc["approver"] = approvers[0] if len(approvers) == 1 else (", ".join(approvers) or None)
    doc["resolution"] = _resolution(doc.get("actions", []), resolved_at)
    doc["action_counts"] = _action_counts(doc.get("actions", []))
    doc["timings"] = _timings(doc, opened, resolved_at)
    llm_answer = doc["diagnosis"].get(Engine.LLM.value)
    doc["llm_tokens"] = llm_answer.get("tokens") if llm_answer else None
    policy, llm = doc["diagnosis"].get(Engine.POLICY.value), doc["diagnosis"].get(Engine.LLM.value)
    doc["evidence_summary"] = _clip("\n".join(
        f"{e['tool']}.{e['operation']} [{e['status']}]: {e['summary']}" for e in (policy or {}).get("evidence", [])))
    doc["diagnosis_text"] = _clip("\n".join(
        part for d in (policy, llm) if d for part in (d["diagnosis"], d["cause"]) if part))
    doc["labels_text"] = " ".join(doc.get("label_pairs", []))
    return doc


def _resolution(actions: list[dict[str, Any]], resolved_at: datetime | None) -> dict[str, Any]:
    """Outcome feedback: an action that succeeded (and was not rolled back) before the alert resolved fixed it."""
    fixes = []
    for action in actions:
        done = _parse(action["states"].get(ActionState.SUCCEEDED.value))
        if (done is not None and resolved_at is not None and done <= resolved_at
                and ActionState.ROLLED_BACK.value not in action["states"] and not action.get("rollback_of")):
            fixes.append((done, action))
    if not fixes:
        return {"resolved": resolved_at is not None, "fixed_by": None}
    done, action = max(fixes, key=lambda pair: (pair[0], pair[1]["action_id"]))
    return {"resolved": True, "fixed_by": action["name"], "fixed_by_action_id": action["action_id"],
            "fixed_by_params": action["params"], "fixed_at": _iso(done), "dry_run": bool(action.get("dry_run"))}


def _action_counts(actions: list[dict[str, Any]]) -> dict[str, int]:
    """Per incident, for adoption analytics: proposed (rollbacks are not proposals), approved (by a person or
    automatically), ran, succeeded, rolled back."""
    proposed = [a for a in actions if not a.get("rollback_of")]

    def reached(state: ActionState) -> int:
        return sum(1 for a in proposed if state.value in a["states"])

    ran = sum(1 for a in proposed if {ActionState.SUCCEEDED.value, ActionState.FAILED.value} & set(a["states"]))
    return {"proposed": len(proposed), "approved": reached(ActionState.APPROVED), "ran": ran,
            "succeeded": reached(ActionState.SUCCEEDED), "rolled_back": reached(ActionState.ROLLED_BACK)}


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds(), 3)


def _timings(doc: dict[str, Any], opened: datetime | None, resolved_at: datetime | None) -> dict[str, Any]:
    policy, llm = doc["diagnosis"].get(Engine.POLICY.value), doc["diagnosis"].get(Engine.LLM.value)
    first_action = min((t for a in doc.get("actions", []) for s, t in a["states"].items()
                        if s not in (ActionState.PROPOSED.value, ActionState.AWAITING_APPROVAL.value)), default=None)
    return {
        "to_diagnosis_s": _seconds(opened, _parse(policy["produced_at"]) if policy else None),
        "to_llm_s": _seconds(opened, _parse(llm["produced_at"]) if llm else None),
        "llm_latency_ms": llm.get("latency_ms") if llm else None,
        "to_first_action_s": _seconds(opened, _parse(first_action)),
        "to_resolve_s": _seconds(opened, resolved_at),
    }


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without the bookkeeping the folds keep (``fold``, not indexed)."""
    return {k: v for k, v in doc.items() if k != "fold"}
