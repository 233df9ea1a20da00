"""``rcaflow rca EVENT.json``: the seed's event JSON in, the strict-JSON root-cause analysis out.

The one-command equivalent of the reference ``qwen_client.py``: the event goes through the same
steps as in the worker (normalise → classify → the policy's triage with its evidence → the LLM,
through the configured OpenAI-compatible provider, with the evidence round → the policy gate →
``decide``), with no broker and no side effect. Exit status: 0 with the RCA on stdout (when the
model's answer was unusable the policy's triage is printed, ``engine`` says so); 1 when the provider
cannot be reached (one line on stderr); 2 for input or configuration errors (the line names the field).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from producers.seed_event import SeedEvent, seed_to_event
from schemas.records import ActionEvent, ActionState, AlertEvent, Incident, RcaResult
from streams.settings import Settings


def _fail(code: int, message: str) -> NoReturn:
    click.echo(f"rca: {message}", err=True)
    raise SystemExit(code)


def read_seed(source: str, data: bytes) -> SeedEvent:
    """The seed's event JSON, or exit 2 with where it is wrong (line and column, or the field's path)."""
    try:
        obj = json.loads(data)
    except UnicodeDecodeError as exc:
        _fail(2, f"{source}: not UTF-8 text: {exc.reason} at byte {exc.start}")
    except json.JSONDecodeError as exc:
        _fail(2, f"{source}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(obj, dict):
        _fail(2, f"{source}: the event must be a JSON object, got {type(obj).__name__}")
    try:
        return SeedEvent.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}" for e in exc.errors())
        _fail(2, f"{source}: not the seed's event JSON: {problems}")


def _report(event: AlertEvent, incident: Incident, final: RcaResult, llm_note: str,
            dropped: list[ActionEvent], actions: list[ActionEvent]) -> dict[str, Any]:
    return {
        "alert": event.alert,
        "severity": event.severity,
        "alert_class": event.alert_class,
        "labels": event.labels,
        "incident_id": incident.incident_id,
        "engine": final.engine.value,
        "model": final.model,
        "llm": llm_note,
        "diagnosis": final.diagnosis,
        "cause": final.cause,
        "confidence": final.confidence,
        "evidence": [{"tool": e.tool, "operation": e.operation, "query": e.query, "status": e.status.value,
                      "summary": e.summary, "error": e.error} for e in final.evidence],
        "actions": [{"name": a.name, "tool": a.tool, "operation": a.operation, "params": a.params,
                     "risk": a.risk.value, "state": a.state.value, "reason": a.reason}
                    for a in actions if a.state is not ActionState.REJECTED],
        "rejected": [{"name": a.name, "reason": a.reason} for a in
                     [*dropped, *(a for a in actions if a.state is ActionState.REJECTED)]],
        "rollback": final.rollback,
        "tokens": final.tokens,
        "latency_ms": final.latency_ms,
    }


async def analyse_event(settings: Settings, seed: SeedEvent, *, tenant: str, evidence: bool) -> dict[str, Any]:
    from streams.stages.second_opinion import ModelUnavailableError
    from streams.wiring.rca import build_second_opinion
    from streams.wiring.runtime import build_stages

    stages = build_stages(settings, engines=evidence)
    second = stages.second_opinion if evidence else build_second_opinion(settings, stages.policies, stages.context)
    if second is None:
        _fail(2, "no LLM provider configured: set QWEN_API_KEY (or llm.enabled and llm.base_url; docs/llm.md)")
    if not evidence:
        second.evidence = None
    draft = seed_to_event(seed, tenant=tenant, received_at=datetime.now(UTC), request_id=uuid.uuid4().hex)
    event = stages.normalize.accept(draft).record
    assert isinstance(event, AlertEvent)
    opened = stages.dedup(event, None).outputs
    if not opened or not isinstance(opened[0].record, Incident):
        _fail(2, "the event opened no incident (a resolved alert with nothing open)")
    incident = opened[0].record
    triaged = next(o.record for o in (await stages.rca(incident)).outputs if isinstance(o.record, RcaResult))
    try:
        answer, dropped, why = await second.ask(triaged)
    except ModelUnavailableError as exc:
        _fail(1, f"the LLM provider at {settings.llm.base_url} cannot be reached: {str(exc).splitlines()[0][:300]}")
    final = answer if answer is not None else triaged
    decided = [o.record for o in stages.decide(final).outputs if isinstance(o.record, ActionEvent)]
    return _report(event, incident, final, why, dropped, decided)


@click.command("rca")
@click.argument("event_file", metavar="EVENT.json")
@click.option("--tenant", default=None, help="Tenant to analyse for (default: the API's default tenant).")
@click.option("--no-evidence", is_flag=True, help="Do not query Prometheus/Elasticsearch/Kubernetes: the model "
              "sees the alert only.")
@click.option("--indent", type=int, default=None, help="Pretty-print the JSON with this indent.")
@click.pass_context
def rca(ctx: click.Context, event_file: str, tenant: str | None, no_evidence: bool, indent: int | None) -> None:
    """The seed's event JSON (a file, or - for stdin) in, the strict-JSON RCA by the configured LLM out."""
    if event_file == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(event_file, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            _fail(2, f"{event_file}: {exc.strerror or exc}")
    seed = read_seed("stdin" if event_file == "-" else event_file, data)
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    report = asyncio.run(analyse_event(settings, seed, tenant=tenant or settings.api.default_tenant,
                                       evidence=not no_evidence))
    click.echo(json.dumps(report, ensure_ascii=False, allow_nan=False, indent=indent, default=str))
