"""Whoever can write to the actions topic cannot make the executor act: on a real broker, approved records that
are unsigned, signed with another key, altered after signing, too late, not allowed by the policy, approved by a
stranger or aimed outside the tenant never run; each is kept in dead-letter and refused in the tenant's audit
trail. The genuine signed one runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from executors import ConfirmPolicy, ToolRegistry
from policies import load_policies
from policies.decision_signature import DecisionKeys
from policies.tenant_scope import TenantScope, TenantScopes
from producers.publisher import KafkaPublisher
from schemas.codec import Codec
from schemas.records import ActionEvent, ActionState, AuditRecord, DeadLetter, Record, Risk
from schemas.topics import ACTIONS, AUDIT, DEAD_LETTER
from streams.executor.service import ExecutorService
from streams.executor.verify import ActionVerifier
from tests.integration.flow.conftest import TEST_KEYS, stack_for
from tests.integration.flow.helpers import TopicReader
from tests.unit.executors.exec_helpers import k8s_api
from tests.unit.executors.k8s_standin import K8sStandIn

NS = "insight-system"
APPROVER = "slack:U1"


def _restart(tenant: str, action_id: str, target: str, *, namespace: str = NS, name: str = "restart_vmalert",
             approver: str | None = APPROVER) -> ActionEvent:
    """A real (not dry-run) restart of deployment ``target``, approved: the record a forger would write."""
    return ActionEvent(tenant=tenant, action_id=action_id, incident_id="inc-1",
                       alert_class="vmalert_config_reload_failure", name=name, tool="k8s",
                       operation="rollout_restart", params={"namespace": namespace, "kind": "deployment",
                                                            "name": target},
                       risk=Risk.HIGH, state=ActionState.APPROVED, dry_run=False, at=datetime.now(UTC),
                       on_failure="undo", approver=approver)


def _signed(action: ActionEvent, keys: DecisionKeys = TEST_KEYS, *, decided_at: datetime | None = None) -> ActionEvent:
    return keys.sign(action, decided_at=decided_at or datetime.now(UTC), valid_for=timedelta(hours=1))


def _states(records: list[Record], action_id: str) -> list[ActionState]:
    return [r.state for r in records if isinstance(r, ActionEvent) and r.action_id == action_id]


def test_the_executor_runs_only_what_a_decider_signed_and_the_policy_allows(
    broker: object, codec: Codec, tmp_path: Path
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    genuine = _signed(_restart(tenant, "act-genuine", "vmalert"))
    forged = {  # action id -> (record written straight onto the topic, the refusal reason expected)
        "act-unsigned": (_restart(tenant, "act-unsigned", "vmalert-unsigned"), "unsigned"),
        "act-wrong-key": (_signed(_restart(tenant, "act-wrong-key", "vmalert-wrong-key"),
                                  DecisionKeys.from_text("an attacker's own key, long enough to be accepted")),
                          "unknown_key"),
        "act-altered": (_signed(_restart(tenant, "act-altered", "vmalert")).model_copy(
            update={"params": {"namespace": NS, "kind": "deployment", "name": "vmalert-altered"}}),
            "bad_signature"),
        "act-expired": (_signed(_restart(tenant, "act-expired", "vmalert-expired"),
                                decided_at=datetime.now(UTC) - timedelta(hours=2)), "expired"),
        "act-not-allowed": (_signed(_restart(tenant, "act-not-allowed", "vmalert-not-allowed",
                                             name="restart_anything")), "not_in_policy"),
        "act-stranger": (_signed(_restart(tenant, "act-stranger", "vmalert-stranger", approver="slack:U666")),
                         "no_approver"),
        "act-outside": (_signed(_restart(tenant, "act-outside", "vmalert-outside", namespace="kube-system")),
                        "out_of_scope"),
    }
    cluster = K8sStandIn()
    targets = [(NS, "vmalert"), *((r.params["namespace"], r.params["name"]) for r, _ in forged.values())]
    for namespace, name in targets:
        cluster.add_workload(namespace, "deployments", name, replicas=2)
    before = {target: cluster.template(target[0], "deployments", target[1]) for target in targets}

    # The worker of the stack audits; the executor runs here, against the stand-in cluster.
    with stack_for(broker.bootstrap, tmp_path, roles=("worker",)) as stack:  # type: ignore[attr-defined]
        prefix = stack.settings.kafka.topic_prefix
        actions = TopicReader(stack.bootstrap, codec, ACTIONS, prefix, alive=stack.check)
        letters = TopicReader(stack.bootstrap, codec, DEAD_LETTER, prefix, alive=stack.check)
        audit = TopicReader(stack.bootstrap, codec, AUDIT, prefix, alive=stack.check)
        verifier = ActionVerifier(TEST_KEYS, load_policies(), approvers={tenant: {APPROVER}},
                                  scopes=TenantScopes([TenantScope(tenant, namespaces=(NS,))]))

        async def scenario() -> None:
            api = k8s_api(cluster.app())
            publisher = KafkaPublisher(stack.bootstrap, codec, prefix)
            service = ExecutorService(bootstrap=stack.bootstrap, codec=codec, publisher=publisher,
                                      registry=ToolRegistry({"k8s": api}), topic_prefix=prefix, dry_run=False,
                                      confirm=ConfirmPolicy(within_s=5.0, every_s=0.05), verifier=verifier)
            running = asyncio.create_task(service.run())
            try:
                for record, _ in forged.values():
                    await publisher.publish(ACTIONS, f"{tenant}:{record.action_id}", record)
                await publisher.publish(ACTIONS, f"{tenant}:{genuine.action_id}", genuine)

                def settled(rs: list[Record]) -> bool:
                    return ActionState.SUCCEEDED in _states(rs, genuine.action_id) and all(
                        ActionState.REJECTED in _states(rs, action_id) for action_id in forged)

                await asyncio.to_thread(actions.wait_for, settled, 60.0, "the genuine run and every refusal")
                await asyncio.to_thread(actions.poll, 1.0)  # a wrong run after them would show up too
            finally:
                service.stop()
                await running
                publisher.close_sync()
                await api.aclose()

        asyncio.run(scenario())

        def refused_in_audit(rs: list[Record]) -> bool:
            steps = {(r.subject_id, r.action) for r in rs if isinstance(r, AuditRecord)}
            return all((action_id, "restart_vmalert:rejected") in steps or (action_id, "restart_anything:rejected")
                       in steps for action_id in forged)

        letters.wait_for(lambda rs: len([r for r in rs if isinstance(r, DeadLetter)]) >= len(forged), 30.0,
                         "a dead letter per refusal")
        audit.wait_for(refused_in_audit, 60.0, "the refusals in the audit trail")
        for reader in (actions, letters, audit):
            reader.close()

    assert _states(actions.records, genuine.action_id) == [ActionState.APPROVED, ActionState.RUNNING,
                                                           ActionState.SUCCEEDED]
    assert cluster.template(NS, "deployments", "vmalert") != before[(NS, "vmalert")]

    by_action = {codec.decode(r.payload, ActionEvent, topic="dl").action_id: r for r in letters.records
                 if isinstance(r, DeadLetter)}
    steps = {r.subject_id: r for r in audit.records if isinstance(r, AuditRecord) and r.action.endswith(":rejected")}
    for action_id, (record, reason) in forged.items():
        # Never ran: no running record, and its target is as it was.
        assert _states(actions.records, action_id) == [ActionState.APPROVED, ActionState.REJECTED], action_id
        namespace, name = record.params["namespace"], record.params["name"]
        assert cluster.template(namespace, "deployments", name) == before[(namespace, name)], action_id
        # Kept whole, with the reason and where it was read.
        letter = by_action[action_id]
        assert letter.stage == "executor" and letter.reason.startswith(f"{reason}: "), (action_id, letter.reason)
        assert codec.decode(letter.payload, ActionEvent, topic="dl") == record
        assert letter.partition is not None and letter.offset is not None and letter.tenant == tenant
        # And the tenant's audit trail says it was refused, and why.
        assert f"refused by the executor ({reason})" in steps[action_id].detail["reason"], action_id
        assert steps[action_id].tenant == tenant
