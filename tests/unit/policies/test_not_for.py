"""``not_for``: an action the evidence's diagnosis says would not help is neither proposed by the policy's triage
nor offered to the model (so the gate drops it if the model proposes it anyway); without evidence it still is."""

from __future__ import annotations

import asyncio

import pytest

from executors.llm import LlmRca, analyse
from policies import PolicySet, decide, load_policies, triage
from policies.errors import PolicyFileError
from policies.loader import DEFAULT_POLICY_FILE, parse_policies
from streams.stages.second_opinion import brief_for, policy_diagnosis
from tests.evals.harness import CASES_DIR, NOW, incident_for, load_case
from tests.unit.executors.llm.standin import ChatStandIn, FakeClock, Reply, answer_json, make_client

SLOW_DISK = {"fsync_p99": 0.9, "commit_p99": 0.02, "peer_rtt_p99": 0.01, "db_size_bytes": 4e8}
RESTART = {"name": "restart_etcd_member", "params": [{"name": "namespace", "value": "kube-system"},
                                                     {"name": "pod", "value": "etcd-master-1"}],
           "reason": "restart the slow member"}


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies()


def test_the_triage_proposes_no_restart_for_a_slow_disk_but_does_without_evidence(policies: PolicySet) -> None:
    incident = incident_for(load_case(CASES_DIR / "etcd_latency-slow-disk"), policies)
    measured = triage(incident, policies, NOW, SLOW_DISK)
    assert "disk" in measured.diagnosis
    assert [a.name for a in measured.actions] == ["collect_diagnostics"]
    blind = triage(incident, policies, NOW)  # no evidence: the fallback diagnosis, an approver may still restart
    assert "restart_etcd_member" in [a.name for a in blind.actions]


def test_the_model_is_not_offered_it_and_the_gate_drops_it(policies: PolicySet) -> None:
    incident = incident_for(load_case(CASES_DIR / "etcd_latency-slow-disk"), policies)
    cls = policies.get("etcd_latency")
    assert cls is not None
    measured = triage(incident, policies, NOW, SLOW_DISK)
    assert policy_diagnosis(cls, measured) == "slow_disk"
    brief = brief_for(cls, incident, measured)
    assert "restart_etcd_member" not in [a.name for a in brief.allowed_actions]
    assert "restart_etcd_member" in [a.name for a in brief_for(cls, incident, triage(incident, policies, NOW))
                                     .allowed_actions]

    async def ask() -> object:
        standin = ChatStandIn([Reply(answer_json(actions=[RESTART]))])
        async with standin.http() as http:
            return await analyse(make_client(standin, http, FakeClock()), incident, brief, measured.evidence)

    outcome = asyncio.run(ask())
    assert isinstance(outcome, LlmRca)
    assert [r.name for r in outcome.rejected] == ["restart_etcd_member"] and outcome.actions == []
    assert decide(outcome.to_rca_result(incident, NOW, measured.evidence), policies, NOW).actions == []


def test_an_unknown_diagnosis_in_not_for_is_refused() -> None:
    text = DEFAULT_POLICY_FILE.read_text(encoding="utf-8").replace("not_for: [slow_disk,", "not_for: [slow_disks,", 1)
    with pytest.raises(PolicyFileError, match="unknown diagnosis 'slow_disks'"):
        parse_policies(text)
