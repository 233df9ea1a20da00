"""The inverse operations a run records as its rollback: running the rollback puts the target back.

alertmanager.silence → alertmanager.expire_silence, and k8s.annotate_pod of a key
that was unset → k8s.remove_pod_annotation, against stand-ins speaking the
documented APIs (Alertmanager v2, the Kubernetes pods endpoint).
"""

from __future__ import annotations

import asyncio

import pytest

from executors import ExecutionOutcome, ToolRegistry, execute
from executors.errors import NotFoundError
from executors.tools.alertmanager import AlertmanagerApi
from schemas.records import ActionState
from tests.unit.executors.exec_helpers import NOW, action, asgi_client, k8s_api
from tests.unit.executors.http_standins import AlertmanagerStandIn
from tests.unit.executors.k8s_standin import K8sStandIn

NS = "insight-system"
SILENCE = {
    "alertname": "PrometheusRemoteWriteBehind",
    "cluster": "HK-DCE5-PLATFORM",
    "namespace": NS,
    "duration": "2h",
    "comment": "remote write catching up after vminsert restart",
}
#: Alertmanager releases whose DELETE answers differ (see AlertmanagerStandIn).
RELEASES = [(0, 28), (0, 25), (0, 23)]


def am_run(am: AlertmanagerStandIn | None, name: str, params: dict[str, str], *, dry_run: bool = False,
           state: ActionState = ActionState.APPROVED, action_id: str = "act-1") -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        backends = {"alertmanager": AlertmanagerApi(asgi_client(am.app()))} if am else {}
        registry = ToolRegistry(backends)
        try:
            return await execute(action(name, params, state=state, action_id=action_id),
                                 registry=registry, dry_run=dry_run, now=NOW)
        finally:
            await registry.aclose()
    return asyncio.run(go())


def silence_and_rollback(am: AlertmanagerStandIn) -> tuple[str, dict[str, str]]:
    outcome = am_run(am, "alertmanager.silence", SILENCE)
    assert outcome.ok and outcome.rollback is not None
    assert outcome.rollback.name == "alertmanager.expire_silence"
    return outcome.rollback.params["silence_id"], outcome.rollback.params


def expire(am: AlertmanagerStandIn | None, params: dict[str, str], *, dry_run: bool = False) -> ExecutionOutcome:
    return am_run(am, "alertmanager.expire_silence", params, dry_run=dry_run, state=ActionState.RUNNING,
                  action_id="rb-1")


def deletes(am: AlertmanagerStandIn) -> list[str]:
    return [path for method, path in am.requests if method == "DELETE"]


@pytest.mark.parametrize("release", RELEASES)
def test_a_silence_records_its_expiry_and_running_it_ends_the_silence(release: tuple[int, int]) -> None:
    am = AlertmanagerStandIn(version=release)
    silence_id, undo = silence_and_rollback(am)
    assert undo == {"silence_id": silence_id} and am.silences[silence_id]["status"]["state"] == "active"

    outcome = expire(am, undo)

    assert outcome.ok, outcome.output
    assert am.silences[silence_id]["status"]["state"] == "expired"
    assert f"expired silence {silence_id}" in outcome.output
    assert 'alertname="PrometheusRemoteWriteBehind"' in outcome.output
    assert outcome.rollback is None
    assert deletes(am) == [f"/api/v2/silence/{silence_id}"]


def test_a_reused_silence_records_the_same_expiry() -> None:
    am = AlertmanagerStandIn()
    first = am_run(am, "alertmanager.silence", SILENCE)
    again = am_run(am, "alertmanager.silence", SILENCE)
    assert "already exists" in again.output
    assert again.rollback == first.rollback and first.rollback is not None


def test_a_silence_dry_run_records_no_expiry() -> None:
    outcome = am_run(AlertmanagerStandIn(), "alertmanager.silence", SILENCE, dry_run=True)
    assert outcome.ok and outcome.rollback is None


def test_the_recorded_expiry_lands_on_the_action_record() -> None:
    am = AlertmanagerStandIn()
    original = action("alertmanager.silence", SILENCE)
    outcome = am_run(am, "alertmanager.silence", SILENCE)
    record = outcome.to_action_event(original, at=NOW)
    assert record.undo_action == "alertmanager.expire_silence"
    assert record.undo_params == {"silence_id": next(iter(am.silences))}


@pytest.mark.parametrize("release", RELEASES)
def test_expiring_twice_is_done_both_times(release: tuple[int, int]) -> None:
    am = AlertmanagerStandIn(version=release)
    silence_id, undo = silence_and_rollback(am)

    first, second = expire(am, undo), expire(am, undo)

    assert first.ok and second.ok, second.output
    assert "already expired" in second.output and "nothing to do" in second.output
    assert deletes(am) == [f"/api/v2/silence/{silence_id}"]
    assert am.silences[silence_id]["status"]["state"] == "expired"


@pytest.mark.parametrize(("release", "answer"), [((0, 28), True), ((0, 23), False)])
def test_alertmanager_answers_for_an_already_expired_silence_both_mean_done(
    release: tuple[int, int], answer: bool
) -> None:
    """0.24+ answers 200 (so the call cannot tell); older releases 500 "already expired", which is not a fault."""
    am = AlertmanagerStandIn(version=release)
    silence_id = am.add_silence("[rcaflow action act-9] done", state="expired")

    async def go() -> bool:
        api = AlertmanagerApi(asgi_client(am.app()))
        try:
            return await api.expire_silence(silence_id)
        finally:
            await api.client.aclose()

    assert asyncio.run(go()) is answer


@pytest.mark.parametrize("release", RELEASES)
def test_expiring_an_unknown_silence_fails_for_good(release: tuple[int, int]) -> None:
    am = AlertmanagerStandIn(version=release)
    outcome = expire(am, {"silence_id": "0b6f1c3e-8a0f-4d0e-9a57-3c1b2f4d5e6a"})
    assert outcome.state is ActionState.FAILED and outcome.error_type == "NotFoundError"
    assert not outcome.retriable
    assert deletes(am) == []


@pytest.mark.parametrize("release", [(0, 25), (0, 23)])
def test_an_old_alertmanagers_500_for_an_unknown_id_is_not_found_not_an_outage(release: tuple[int, int]) -> None:
    am = AlertmanagerStandIn(version=release)

    async def go() -> None:
        api = AlertmanagerApi(asgi_client(am.app()))
        try:
            await api.expire_silence("0b6f1c3e-8a0f-4d0e-9a57-3c1b2f4d5e6a")
        finally:
            await api.client.aclose()

    with pytest.raises(NotFoundError) as caught:
        asyncio.run(go())
    assert not caught.value.retriable


@pytest.mark.parametrize("bad", [
    "../silences",
    "0b6f1c3e-8a0f-4d0e-9a57-3c1b2f4d5e6a/../../-/quit",
    "0b6f1c3e-8a0f-4d0e-9a57-3c1b2f4d5e6a?x=1",
    "0b6f1c3e-8a0f-4d0e-9a57-3c1b2f4d5e6a\n",
    "0b6f1c3e8a0f4d0e9a573c1b2f4d5e6a",
    "not-a-uuid",
    "",
])
def test_a_silence_id_that_is_not_a_uuid_is_refused_before_any_request(bad: str) -> None:
    am = AlertmanagerStandIn()
    outcome = expire(am, {"silence_id": bad})
    assert outcome.state is ActionState.FAILED and outcome.error_type == "InvalidParamsError"
    assert "silence_id" in outcome.output
    if bad:
        assert bad not in outcome.output
    assert am.requests == []


def test_an_upper_case_silence_id_reaches_alertmanager_as_it_minted_it() -> None:
    am = AlertmanagerStandIn()
    silence_id, _ = silence_and_rollback(am)
    outcome = expire(am, {"silence_id": silence_id.upper()})
    assert outcome.ok and am.silences[silence_id]["status"]["state"] == "expired"


def test_a_silence_a_human_set_is_never_expired_by_the_inverse() -> None:
    am = AlertmanagerStandIn()
    theirs = am.add_silence("maintenance window, ask Li Wei")
    outcome = expire(am, {"silence_id": theirs})
    assert outcome.state is ActionState.FAILED and outcome.error_type == "NotExecutableError"
    assert "not created by rcaflow" in outcome.output
    assert am.silences[theirs]["status"]["state"] == "active" and deletes(am) == []


def test_expire_dry_run_describes_without_expiring() -> None:
    am = AlertmanagerStandIn()
    silence_id, undo = silence_and_rollback(am)
    outcome = expire(am, undo, dry_run=True)
    assert outcome.ok and outcome.dry_run
    assert outcome.output.startswith(f"dry run: would expire active silence {silence_id}")
    assert am.silences[silence_id]["status"]["state"] == "active" and deletes(am) == []


def test_expire_without_alertmanager_describes_or_fails_clearly() -> None:
    undo = {"silence_id": "0b6f1c3e-8a0f-4d0e-9a57-3c1b2f4d5e6a"}
    preview = expire(None, undo, dry_run=True)
    assert preview.ok and "would DELETE /api/v2/silence/0b6f1c3e-8a0f-4d0e-9a57-3c1b2f4d5e6a" in preview.output
    real = expire(None, undo)
    assert real.state is ActionState.FAILED and "no Alertmanager is configured" in real.output


# ----------------------------------------------------------------------------- k8s.remove_pod_annotation

LOG_IGNORE = "insight.io/log-ignore"


@pytest.fixture
def cluster() -> K8sStandIn:
    standin = K8sStandIn()
    standin.add_pod(NS, "vminsert-0", annotations={"team": "sre"})
    standin.add_pod(NS, "other-0")
    return standin


def k8s_run(standin: K8sStandIn, name: str, params: dict[str, str], *, dry_run: bool = False,
            state: ActionState = ActionState.APPROVED, action_id: str = "act-1") -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        api = k8s_api(standin.app())
        try:
            return await execute(action(name, params, state=state, action_id=action_id),
                                 registry=ToolRegistry({"k8s": api}), dry_run=dry_run, now=NOW)
        finally:
            await api.aclose()
    return asyncio.run(go())


def pod_annotations(standin: K8sStandIn, pod: str) -> dict[str, str]:
    return dict(standin.pods[(NS, pod)]["metadata"].get("annotations") or {})


def patches(standin: K8sStandIn) -> list[tuple[str, str, dict[str, str]]]:
    return [w for w in standin.writes if w[0] == "PATCH"]


def test_remove_dry_run_is_the_api_servers_and_changes_nothing(cluster: K8sStandIn) -> None:
    outcome = k8s_run(cluster, "k8s.remove_pod_annotation", {"namespace": NS, "pod": "vminsert-0", "key": "team"},
                      dry_run=True)
    assert outcome.ok and outcome.output.startswith("server-side dry run accepted: would remove annotation team")
    ((_method, _path, query),) = patches(cluster)
    assert query.get("dryRun") == "All"
    assert pod_annotations(cluster, "vminsert-0") == {"team": "sre"}


@pytest.mark.parametrize("key", ["kubectl.kubernetes.io/restartedAt", "node.k8s.io/x", "bad key", "a/b/c"])
def test_a_reserved_or_malformed_key_is_refused_before_any_request(cluster: K8sStandIn, key: str) -> None:
    outcome = k8s_run(cluster, "k8s.remove_pod_annotation", {"namespace": NS, "pod": "vminsert-0", "key": key})
    assert outcome.state is ActionState.FAILED and outcome.error_type == "InvalidParamsError"
    assert "key" in outcome.output
    assert cluster.writes == []


def test_removing_from_a_missing_pod_fails_for_good(cluster: K8sStandIn) -> None:
    outcome = k8s_run(cluster, "k8s.remove_pod_annotation", {"namespace": NS, "pod": "gone-0", "key": LOG_IGNORE})
    assert outcome.state is ActionState.FAILED and outcome.error_type == "NotFoundError" and not outcome.retriable
