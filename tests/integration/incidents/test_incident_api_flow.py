"""On the real broker, with a real worker and executor: an alert mail becomes an incident on GET /incidents,
its high-risk action is listed as awaiting approval, `rcaflow approve` decides it over HTTP, the executor runs
it, and the incident's timeline names the approver, the channel (api) and the outcome.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from schemas.codec import Codec
from schemas.records import AuditRecord, DeadLetter
from schemas.topics import AUDIT, DEAD_LETTER
from streams.commands.incidents import approve, incident, incidents, reject
from streams.wiring.supervisor import Stack
from tests.integration.flow.helpers import TopicReader
from tests.integration.incidents.conftest import OTHER, TENANT, TOKENS, Api, free_port, waiting_incident


def _cli(command: Any, args: list[str], api: Api, token: str) -> Any:
    return CliRunner().invoke(command, [*args, "--api-url", api.url, "--token", TOKENS[token]])


def test_an_alert_becomes_an_incident_and_rcaflow_approve_runs_its_action(
    api: Api, stack: Stack, codec: Codec, samples_dir: Path
) -> None:
    incident_id, action_id = waiting_incident(api, stack, codec, samples_dir, TENANT)

    listed = _cli(incidents, ["--json"], api, "read")
    assert listed.exit_code == 0, listed.output
    [summary] = json.loads(listed.stdout)["items"]
    assert summary["incident_id"] == incident_id and summary["actions_awaiting_approval"] == 1
    assert summary["alert_class"] and summary["state"] == "open"

    # The other tenant sees neither the incident nor its action.
    assert api.get(f"/incidents/{incident_id}", "other").status_code == 404
    assert api.get("/actions", "other").json()["items"] == []
    # A read token, or an approver token whose identity the tenant does not list, may not decide.
    as_reader = _cli(approve, [action_id], api, "read")
    assert as_reader.exit_code == 1 and "403 unknown_approver" in as_reader.stderr, as_reader.output
    as_mallory = _cli(approve, [action_id], api, "mallory")
    assert as_mallory.exit_code == 1 and "403 unknown_approver" in as_mallory.stderr, as_mallory.output
    as_bob = _cli(reject, [action_id], api, "bob")
    assert as_bob.exit_code == 1 and "403 wrong_tenant" in as_bob.stderr, as_bob.output
    assert "# HELP rcaflow_pending_approvals" in httpx.get(api.url + "/metrics", timeout=10).text
    metrics = httpx.get(api.url + "/metrics", timeout=10).text
    assert f'rcaflow_pending_approvals{{tenant="{TENANT}"}} 1.0' in metrics

    approved = _cli(approve, [action_id, "--reason", "jenkins is stuck"], api, "alice")
    assert approved.exit_code == 0, approved.output
    assert f"approved {action_id} as api:alice via api" in approved.stdout

    detail = api.wait_for("the executor's outcome", f"/incidents/{incident_id}", "read",
                          lambda d: any(a["action_id"] == action_id and a["state"] in ("succeeded", "failed", "dry-run")
                                        for a in d["actions"]), stack.check)
    [action] = [a for a in detail["actions"] if a["action_id"] == action_id]
    states = [h["state"] for h in action["history"]]
    assert states[:3] == ["awaiting_approval", "approved", "running"], states
    # The test stack runs dry: a dry run that went through says so everywhere, never "succeeded".
    assert states[-1] == "dry-run" and action["dry_run"] and action["state"] == "dry-run", states
    assert any(e["kind"] == "action" and e["ref"] == action_id and ": dry-run" in e["summary"]
               for e in detail["timeline"]), detail["timeline"]
    dry = api.get("/actions", "read", state="dry-run").json()["items"]
    assert action_id in [a["action_id"] for a in dry]
    assert action_id not in [a["action_id"] for a in api.get("/actions", "read", state="succeeded").json()["items"]]
    assert action["approver"] == "api:alice"
    [decision] = detail["approvals"]
    assert (decision["approver"], decision["via"], decision["verified"], decision["reason"]) == (
        "api:alice", "api", True, "jenkins is stuck")
    kinds = {e["kind"] for e in detail["timeline"]}
    assert {"alert", "diagnosis", "action", "approval"} <= kinds, kinds
    assert detail["diagnoses"] and detail["diagnoses"][0]["evidence"] is not None
    shown = _cli(incident, [incident_id], api, "read")
    assert shown.exit_code == 0 and "approve by api:alice via api" in shown.stdout, shown.output
    [action_line] = [line for line in shown.stdout.splitlines() if line.startswith(f"action {action_id} ")]
    assert action_line.endswith(": dry-run") and "succeeded" not in shown.stdout, shown.stdout

    # The audit chain names the API approver; the audit steps reach the incident's timeline.
    audit = TopicReader(stack.bootstrap, codec, AUDIT, stack.settings.kafka.topic_prefix, alive=stack.check)
    try:
        audit.wait_for(lambda rs: any(isinstance(r, AuditRecord) and r.subject_id == action_id
                                      and r.actor == "api:alice" for r in rs), what="the approval's audit step")
    finally:
        audit.close()
    api.wait_for("audit steps on the timeline", f"/incidents/{incident_id}", "read",
                 lambda d: any(s["subject_id"] == action_id for s in d["audit"]), stack.check)

    # Decided once: a second decision is refused with the reason, and nothing new is published.
    again = _cli(reject, [action_id], api, "alice")
    assert again.exit_code == 1 and "409" in again.stderr, again.output
    letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, stack.settings.kafka.topic_prefix, alive=stack.check)
    try:
        letters.wait_for(lambda rs: sum(isinstance(r, DeadLetter) and r.stage == "approvals" and r.tenant == TENANT
                                        for r in rs) >= 3, what="the refused API decisions, kept for the audit")
    finally:
        letters.close()


def test_an_unknown_token_cannot_approve_and_an_unreachable_api_is_one_line(
    api: Api, stack: Stack, codec: Codec, samples_dir: Path
) -> None:
    _incident_id, action_id = waiting_incident(api, stack, codec, samples_dir, OTHER)
    forged = CliRunner().invoke(approve, [action_id, "--api-url", api.url, "--token", "forged-token"])
    assert forged.exit_code == 1 and "401 bad_signature" in forged.stderr, forged.output
    down = CliRunner().invoke(incidents, ["--api-url", f"http://127.0.0.1:{free_port()}", "--token", "x"])
    assert down.exit_code == 2 and down.stderr.startswith("rcaflow: cannot reach the API at "), down.output
    assert len(down.stderr.strip().splitlines()) == 1
    # Still waiting: nothing was decided by the refused requests.
    page = api.get("/actions", "other", state="awaiting_approval").json()
    assert [a["action_id"] for a in page["items"]] == [action_id]
