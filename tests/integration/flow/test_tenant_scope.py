"""Two tenants on one deployment, on the real broker: each tenant's mail acts and reads only inside its own scope.

Reproduces issue 11: a mail from acme naming kube-system/coredns got auto-approved actions
against that namespace, and acme's records received another tenant's pod logs. The worker
and executor run as processes with two tenants configured; the Kubernetes API they read
evidence from is a local stand-in (served on loopback, reached through a kubeconfig) that
holds pods of both tenants and records every read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import yaml

from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, AlertEvent, DeadLetter, Incident, RawMail, RcaResult, SourceKind
from schemas.topics import ACTIONS, DEAD_LETTER, INCIDENTS, NORMALIZED, RAW_MAIL, RCA_RESULT
from streams.wiring.supervisor import Stack
from tests.integration.flow.conftest import stack_for
from tests.integration.flow.helpers import TopicReader
from tests.support.loopback import serve
from tests.support.tenant_mail import jenkins_mail
from tests.unit.executors.evidence.standins import K8sReadStandIn

ACME_SENDER = "DCE5 Insight <insight@alerts.acme.test>"
TENANTS_ENV = {
    "RCAFLOW_TENANTS__ACME__NAMESPACES": '["team-a-*"]',
    "RCAFLOW_TENANTS__ACME__SENDERS": '["*@alerts.acme.test"]',
    "RCAFLOW_TENANTS__OTHER__NAMESPACES": '["kube-system", "team-b"]',
    "RCAFLOW_TENANTS__OTHER__SENDERS": '["*@alerts.other.test"]',
}


@dataclass
class Deployment:
    stack: Stack
    cluster: K8sReadStandIn

    @property
    def prefix(self) -> str:
        return self.stack.settings.kafka.topic_prefix


@pytest.fixture(scope="module")
def deployment(broker: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("tenant-scope")
    cluster = K8sReadStandIn()
    for namespace, pod in (("kube-system", "coredns-0"), ("team-b", "api-0"), ("team-a-ci", "jenkins-0")):
        cluster.add_labelled_pod(namespace, pod, {"app": pod.rsplit("-", 1)[0]})
        cluster.add_event(namespace, pod, "BackOff", f"{namespace} private event of {pod}")
    with serve(cluster.app(), "k8s-standin") as url:
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": url}}],
            "users": [{"name": "viewer", "user": {"token": cluster.viewer_token}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "viewer"}}],
        }))
        stack = stack_for(broker.bootstrap, tmp, tenants_env=TENANTS_ENV,  # type: ignore[attr-defined]
                          extra_env={"RCAFLOW_EVIDENCE__KUBECONFIG": str(kubeconfig)})
        with stack:
            yield Deployment(stack, cluster)


def _send(deployment: Deployment, codec: Codec, tenant: str, raw: bytes) -> None:
    """Put a mail on raw-mail for ``tenant`` as a mailbox producer would (one key: the mails keep their order)."""
    publisher = KafkaPublisher(deployment.stack.bootstrap, codec, deployment.prefix)
    mail = RawMail(tenant=tenant, message_id=f"<{uuid.uuid4().hex}@t>", mailbox="t", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), raw=raw)
    publisher.publish_sync(RAW_MAIL, f"{tenant}:m", mail)
    publisher.close_sync()


def _reader(deployment: Deployment, codec: Codec, spec: object) -> TopicReader:
    return TopicReader(deployment.stack.bootstrap, codec, spec, deployment.prefix,  # type: ignore[arg-type]
                       alive=deployment.stack.check)


def _result_for(deployment: Deployment, codec: Codec, tenant: str, pod: str) -> RcaResult:
    reader = _reader(deployment, codec, RCA_RESULT)
    try:
        records = reader.wait_for(
            lambda rs: any(isinstance(r, RcaResult) and r.tenant == tenant
                           and r.incident.event.labels.get("workload") == pod for r in rs),
            what=f"the analysis of {tenant}'s alert about {pod}")
    finally:
        reader.close()
    return next(r for r in records if isinstance(r, RcaResult) and r.incident.event.labels.get("workload") == pod
                and r.tenant == tenant)


def _actions_of(deployment: Deployment, codec: Codec, result: RcaResult) -> list[ActionEvent]:
    """Every record of the actions the analysis proposed, once each has its decision."""
    reader = _reader(deployment, codec, ACTIONS)

    def mine(records: list[object]) -> list[ActionEvent]:
        return [r for r in records if isinstance(r, ActionEvent) and r.incident_id == result.incident_id]

    try:
        records = reader.wait_for(lambda rs: len({a.name for a in mine(rs)}) >= len(result.actions),
                                  what="a decision for every proposed action")
    finally:
        reader.close()
    return mine(records)


def test_acme_naming_kube_system_gets_no_auto_approved_action_and_reads_nothing_there(
    deployment: Deployment, codec: Codec
) -> None:
    _send(deployment, codec, "acme", jenkins_mail(sender=ACME_SENDER, namespace="kube-system", pod="coredns-0"))
    result = _result_for(deployment, codec, "acme", "coredns-0")

    # Evidence: nothing of kube-system was read for acme; the record says why.
    assert not [path for path, _ in deployment.cluster.reads if "/namespaces/kube-system/" in path]
    events = next(e for e in result.evidence if (e.tool, e.operation) == ("k8s", "events"))
    assert events.status.value == "skipped"
    assert "outside tenant scope: namespace 'kube-system' is not one of tenant acme's namespaces" in events.summary
    assert "private event" not in " ".join(e.summary for e in result.evidence)

    # Actions: each one recorded as rejected with the reason; none approved, none sent for approval.
    actions = _actions_of(deployment, codec, result)
    assert {a.name for a in actions} == {"collect_diagnostics", "restart_controller"}
    assert {a.state for a in actions} == {ActionState.REJECTED}
    assert all(a.reason.startswith("outside tenant scope: namespace 'kube-system'") for a in actions)


def test_acmes_own_namespace_is_read_and_acted_on(deployment: Deployment, codec: Codec) -> None:
    # The control: the same mail about acme's namespace reads its events and goes ahead, so the test above
    # sees a refusal, not a pipeline that reads and does nothing.
    _send(deployment, codec, "acme", jenkins_mail(sender=ACME_SENDER, namespace="team-a-ci", pod="jenkins-0"))
    result = _result_for(deployment, codec, "acme", "jenkins-0")
    assert [path for path, _ in deployment.cluster.reads if path == "/api/v1/namespaces/team-a-ci/events"]
    events = next(e for e in result.evidence if (e.tool, e.operation) == ("k8s", "events"))
    assert "team-a-ci private event of jenkins-0" in events.summary
    states: dict[str, set[ActionState]] = {}
    for action in _actions_of(deployment, codec, result):
        states.setdefault(action.name, set()).add(action.state)
    assert ActionState.APPROVED in states["collect_diagnostics"]
    assert ActionState.AWAITING_APPROVAL in states["restart_controller"]


def test_a_mail_from_an_unknown_sender_is_dead_lettered_and_opens_no_incident(
    deployment: Deployment, codec: Codec
) -> None:
    spoofed_pod, good_pod = f"spoof-{uuid.uuid4().hex[:6]}", f"jenkins-{uuid.uuid4().hex[:6]}"
    spoofed = jenkins_mail(sender="Insight <insight@alerts.evil.test>", namespace="team-a-ci", pod=spoofed_pod)
    _send(deployment, codec, "acme", spoofed)
    # A good mail after it, on the same key: once its incident exists, the spoofed one has been handled.
    _send(deployment, codec, "acme", jenkins_mail(sender=ACME_SENDER, namespace="team-a-ci", pod=good_pod))

    letters = _reader(deployment, codec, DEAD_LETTER)
    # The dead letter keeps the raw-mail record as read, the mail's bytes inside it.
    found = letters.wait_for(lambda rs: any(isinstance(r, DeadLetter) and spoofed in r.payload for r in rs),
                             what="the spoofed mail's dead letter")
    letters.close()
    letter = next(r for r in found if isinstance(r, DeadLetter) and spoofed in r.payload)
    assert letter.stage == "normalize" and letter.tenant == "acme"
    assert letter.reason == ("outside tenant scope: sender 'insight@alerts.evil.test' is not one of tenant acme's "
                             "senders")

    incidents = _reader(deployment, codec, INCIDENTS)
    seen = incidents.wait_for(lambda rs: any(isinstance(r, Incident) and r.event.labels.get("workload") == good_pod
                                             for r in rs), what="the good mail's incident")
    incidents.close()
    assert not [r for r in seen if isinstance(r, Incident) and r.event.labels.get("workload") == spoofed_pod]
    normalized = _reader(deployment, codec, NORMALIZED)
    events = normalized.wait_for(lambda rs: any(isinstance(r, AlertEvent) and r.labels.get("workload") == good_pod
                                                for r in rs), what="the good mail's alert")
    normalized.close()
    assert not [r for r in events if isinstance(r, AlertEvent) and r.labels.get("workload") == spoofed_pod]
