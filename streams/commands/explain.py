"""`rcaflow explain FILE.eml|EVENT.json`: what rcaflow would conclude and do, without a broker or side effects."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from producers.mail import MailParseError, parse_mail
from producers.seed_event import SeedEvent, seed_to_event
from schemas.records import ActionEvent, ActionState, AlertEvent, EventSource, Incident, RcaResult, SourceKind
from streams.settings import Settings
from streams.wiring.runtime import Stages, build_stages

_WOULD = {
    ActionState.APPROVED: "would run",
    ActionState.AWAITING_APPROVAL: "would wait for approval",
    ActionState.REJECTED: "refused by the policy",
}


def _events(path: Path, tenant: str, stages: Stages, settings: Settings) -> list[AlertEvent]:
    data = path.read_bytes()
    now = datetime.now(UTC)
    if path.suffix.lower() == ".json":
        try:
            seed = SeedEvent.model_validate_json(data)
        except ValidationError as exc:
            raise click.ClickException(f"{path}: not the seed's event JSON: {exc.errors()[0]['msg']} "
                                       f"at {'.'.join(str(p) for p in exc.errors()[0]['loc'])}") from exc
        events = [seed_to_event(seed, tenant=tenant, received_at=now, request_id=uuid.uuid4().hex)]
    else:
        try:
            parsed = parse_mail(data, tenant=tenant, received_at=now,
                                source=EventSource(kind=SourceKind.FILE, mailbox=str(path)),
                                registry=stages.templates,
                                cluster_names=_cluster_names(settings, tenant))
        except MailParseError as exc:
            raise click.ClickException(f"{path}: no alert found: {exc.message}") from exc
        events = parsed.events
    return [stages.normalize.accept(e).record for e in events]  # type: ignore[misc]


def _cluster_names(settings: Settings, tenant: str) -> dict[str, str] | None:
    config = settings.tenants.get(tenant)
    return config.cluster_names if config else None


async def _explain_event(stages: Stages, event: AlertEvent) -> dict[str, Any]:
    result = stages.dedup(event, None)
    if not result.outputs:
        return {"alert": event.alert, "alert_class": event.alert_class, "status": event.status.value,
                "diagnosis": "resolved with no open incident: nothing to analyse", "evidence": [], "actions": []}
    incident = result.outputs[0].record
    assert isinstance(incident, Incident)
    triaged = (await stages.rca(incident)).outputs
    final = triaged[0].record
    assert isinstance(final, RcaResult)
    llm_note = "off (no QWEN_API_KEY)"
    if stages.second_opinion is not None:
        second = await stages.second_opinion(final)
        answers = [o.record for o in second.outputs if isinstance(o.record, RcaResult)]
        llm_note = second.outcome
        if answers:
            final = answers[0]
    decided = stages.decide(final).outputs
    actions = [o.record for o in decided if isinstance(o.record, ActionEvent)]
    return {
        "alert": event.alert,
        "alert_class": event.alert_class,
        "severity": event.severity,
        "status": event.status.value,
        "labels": event.labels,
        "incident_id": incident.incident_id,
        "engine": final.engine.value,
        "llm": llm_note,
        "diagnosis": final.diagnosis,
        "cause": final.cause,
        "confidence": final.confidence,
        "evidence": [
            {"tool": e.tool, "operation": e.operation, "query": e.query, "status": e.status.value,
             "summary": e.summary, "error": e.error}
            for e in final.evidence
        ],
        "actions": [
            {"name": a.name, "tool": f"{a.tool}.{a.operation}", "params": a.params, "risk": a.risk.value,
             "state": a.state.value, "would": _WOULD.get(a.state, a.state.value), "reason": a.reason}
            for a in actions
        ],
        "rollback": final.rollback,
    }


def _print_human(path: Path, report: dict[str, Any]) -> None:
    click.echo(f"{path.name}: {report['alert']} [{report.get('severity', '')} {report['status']}] "
               f"→ {report['alert_class']}")
    click.echo(f"  diagnosis ({report.get('engine', 'policy')}): {report['diagnosis']}")
    if report.get("cause"):
        click.echo(f"  cause: {report['cause']}")
    for ev in report["evidence"]:
        line = ev["summary"] or ev["error"] or ""
        click.echo(f"  evidence {ev['tool']}.{ev['operation']} [{ev['status']}]: {ev['query'][:160]}"
                   + (f"\n      {line[:300]}" if line else ""))
    for act in report["actions"]:
        params = ", ".join(f"{k}={v}" for k, v in act["params"].items())
        why = f" ({act['reason']})" if act["state"] == ActionState.REJECTED.value and act["reason"] else ""
        click.echo(f"  action {act['name']} ({act['tool']} {params}) risk={act['risk']}: {act['would']}{why}")
    if not report["actions"]:
        click.echo("  no actions")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", default=None, help="Tenant to explain for (default: the API's default tenant).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per alert on stdout.")
@click.pass_context
def explain(ctx: click.Context, files: tuple[Path, ...], tenant: str | None, as_json: bool) -> None:
    """Parse, triage (with evidence and the LLM when configured) and decide, printing what would happen."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    stages = build_stages(settings, engines=True)
    tenant = tenant or settings.api.default_tenant

    async def run() -> list[tuple[Path, dict[str, Any]]]:
        reports = []
        for path in files:
            for event in _events(path, tenant, stages, settings):
                reports.append((path, await _explain_event(stages, event)))
        return reports

    for path, report in asyncio.run(run()):
        if as_json:
            click.echo(json.dumps({"file": str(path), **report}, ensure_ascii=False, default=str))
        else:
            _print_human(path, report)
