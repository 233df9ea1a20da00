"""A policy naming k8s.owners and the netprobe operations passes ``rcaflow policy check`` and its plan really runs."""

from __future__ import annotations

import asyncio
import socket
import textwrap
from pathlib import Path

import httpx
from click.testing import CliRunner

from executors.evidence import EvidenceReport, EvidenceRunner, build_evidence_tools, plan_from_triage
from executors.evidence.netprobe import NetprobeConfig
from policies import load_policies, parse_policies, triage
from schemas.records import AlertEvent, EvidenceStatus, Incident
from streams.commands.policy import policy
from tests.unit.executors.evidence.helpers import NOW, run
from tests.unit.executors.evidence.standins import K8sReadStandIn
from tests.unit.executors.exec_helpers import k8s_api

NS = "insight-system"

POLICY = textwrap.dedent(
    """\
    version: 1
    defaults:
      dedup_window: 30m
      approval_ttl: 1h
    classes:
      - id: unreachable
        title: A scrape target is down
        runbooks: [https://example.test/runbook]
        match:
          - alerts: [TargetDown]
        vars:
          namespace: {from: [labels.namespace], format: dns1123_label}
          pod: {from: [labels.pod], format: dns1123_subdomain}
          instance: {from: [labels.instance], format: instance}
        evidence:
          - {id: owners, tool: k8s, operation: owners, query: 'namespace=${namespace} pod=${pod}'}
          - {id: port_open, tool: netprobe, operation: tcp, query: '${instance}'}
          - {id: listener, tool: netprobe, operation: tcp, query: 'vminsert'}
          - {id: resolves, tool: netprobe, operation: dns, query: 'local'}
          - {id: health, tool: netprobe, operation: http, query: 'target=vmselect'}
        thresholds:
          - {id: closed, expr: 'port_open < 1.0 && listener > 0.0'}
        diagnoses:
          - {id: instance_down, when: [closed], diagnosis: The instance does not listen, confidence: 0.8}
          - {id: fallback, diagnosis: Unknown, confidence: 0.3}
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def incident(instance: str) -> Incident:
    labels = {"namespace": NS, "pod": "vminsert-7d9f8c6b5-x2x4z", "instance": instance}
    event = AlertEvent(tenant="acme", event_id="e1", fingerprint="f1", alert="TargetDown", severity="warning",
                       alert_class="unreachable", labels=labels, received_at=NOW, parser="test")
    return Incident(tenant="acme", incident_id="i1", fingerprint="f1", alert_class="unreachable",
                    opened_at=NOW, last_seen_at=NOW, last_event_id="e1", event=event)


def test_owners_and_netprobe_steps_pass_policy_check_and_run_through_the_runner(tmp_path: Path) -> None:
    path = tmp_path / "probes.yaml"
    path.write_text(POLICY, encoding="utf-8")
    checked = CliRunner().invoke(policy, ["check", str(path)])
    assert checked.exit_code == 0 and checked.output == "ok: 1 classes\n"

    policies = load_policies(path)
    cls = policies.get("unreachable")
    assert cls is not None
    inc = incident(f"127.0.0.1:{free_port()}")  # nothing listens there
    plan = plan_from_triage([s.id for s in cls.spec.evidence], triage(inc, policies, NOW).evidence)

    cluster = K8sReadStandIn()
    cluster.add_labelled_pod(NS, "vminsert-7d9f8c6b5-x2x4z", {"app": "vminsert"},
                             owner=("ReplicaSet", "vminsert-7d9f8c6b5"))
    cluster.add_replicaset(NS, "vminsert-7d9f8c6b5", "vminsert")
    cluster.add_workload(NS, "deployments", "vminsert")

    async def go() -> EvidenceReport:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        k8s = k8s_api(cluster.app(), "viewer-token")
        http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, text="OK")))
        config = NetprobeConfig(targets={"vminsert": f"127.0.0.1:{port}", "local": "localhost:9090",
                                         "vmselect": "http://vmselect.test:8481/health"})
        tools = build_evidence_tools(k8s=k8s, netprobe=config, http_client=http)
        try:
            return await EvidenceRunner(tools).run(plan, now=NOW)
        finally:
            server.close()
            await server.wait_closed()
            await asyncio.gather(k8s.aclose(), http.aclose())

    report = run(go)
    assert [e.status for e in report.evidence] == [EvidenceStatus.SUCCESS] * 5, report.evidence
    assert [f"{e.tool}.{e.operation}" for e in report.evidence] == [
        "k8s.owners", "netprobe.tcp", "netprobe.tcp", "netprobe.dns", "netprobe.http"]
    assert report.evidence[0].summary.endswith(
        "Pod/vminsert-7d9f8c6b5-x2x4z → ReplicaSet/vminsert-7d9f8c6b5 → Deployment/vminsert")
    assert report.values["owners"] == 3.0
    assert report.values["port_open"] == 0.0 and report.values["listener"] == 1.0
    assert report.values["resolves"] >= 1.0 and report.values["health"] == 1.0
    assert triage(inc, policies, NOW, evidence_values=report.values).diagnosis == "The instance does not listen"


def test_a_hostile_instance_label_blocks_the_probe_instead_of_reaching_it() -> None:
    policies = parse_policies(POLICY)
    cls = policies.get("unreachable")
    assert cls is not None
    inc = incident("evil.test:22 target=x")
    plan = plan_from_triage([s.id for s in cls.spec.evidence], triage(inc, policies, NOW).evidence)
    report = run(lambda: EvidenceRunner({}).run(plan, now=NOW))
    assert report.evidence[1].status is EvidenceStatus.ERROR and "evil" not in report.evidence[1].query
    assert "port_open" not in report.values

