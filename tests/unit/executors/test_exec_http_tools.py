"""http.reload and alertmanager.silence against local stand-ins speaking the documented endpoints."""

from __future__ import annotations

import asyncio

import pytest

from executors import ExecutionOutcome, ToolRegistry, execute
from executors.tools.alertmanager import AlertmanagerApi
from executors.tools.http_reload import ReloadEndpoints, ReloadKind, ReloadTarget
from schemas.records import ActionState
from tests.unit.executors.exec_helpers import NOW, action, asgi_client
from tests.unit.executors.http_standins import AlertmanagerStandIn, MetricsReloadStandIn, ReloadStandIn


def reload(standin: ReloadStandIn | None, target: str, *, dry_run: bool = False) -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        backends = {}
        if standin is not None:
            client = asgi_client(standin.app())
            backends["http"] = ReloadEndpoints(client, {"vmalert": "http://vmalert.insight-system:8880/"})
        return await execute(action("http.reload", {"target": target}), registry=ToolRegistry(backends),
                             dry_run=dry_run, now=NOW)
    return asyncio.run(go())


def test_reload_posts_to_the_configured_endpoint() -> None:
    server = ReloadStandIn()
    outcome = reload(server, "vmalert")
    assert outcome.ok and server.reloads == 1
    assert "POST http://vmalert.insight-system:8880/-/reload: 200" in outcome.output


def test_reload_dry_run_names_the_url_and_does_not_call_it() -> None:
    server = ReloadStandIn()
    outcome = reload(server, "vmalert", dry_run=True)
    assert outcome.ok and outcome.dry_run and server.reloads == 0
    assert outcome.output == "dry run: would POST http://vmalert.insight-system:8880/-/reload"


def test_reload_of_an_unconfigured_name_fails_and_lists_the_configured_ones() -> None:
    outcome = reload(ReloadStandIn(), "prometheus")
    assert outcome.state is ActionState.FAILED and outcome.error_type == "InvalidParamsError"
    assert "unknown target 'prometheus'; configured: vmalert" in outcome.output


@pytest.mark.parametrize("target", ["http://evil.example/", "vmalert\n", "vmalert/../admin", "VMALERT", "", "a" * 80])
def test_reload_target_is_a_name_never_a_url(target: str) -> None:
    outcome = reload(ReloadStandIn(), target)
    assert outcome.state is ActionState.FAILED and outcome.error_type == "InvalidParamsError"
    assert "target" in outcome.output


def test_prometheus_without_lifecycle_api_explains_the_flag() -> None:
    outcome = reload(ReloadStandIn(lifecycle_enabled=False), "vmalert")
    assert outcome.state is ActionState.FAILED and outcome.error_type == "ForbiddenError"
    assert "Lifecycle API is not enabled" in outcome.output and "--web.enable-lifecycle" in outcome.output


def test_reload_with_a_broken_config_is_reported_with_the_servers_reason() -> None:
    outcome = reload(ReloadStandIn(config_ok=False), "vmalert")
    assert outcome.state is ActionState.FAILED and outcome.retriable
    assert "parsing YAML file rules.yml" in outcome.output


def test_configured_base_urls_must_be_plain_http() -> None:
    client = asgi_client(ReloadStandIn().app())
    with pytest.raises(ValueError, match="credentials"):
        ReloadEndpoints(client, {"vmalert": "http://user:pw@vmalert:8880"})
    with pytest.raises(ValueError, match="scheme"):
        ReloadEndpoints(client, {"vmalert": "file:///etc/passwd"})


def confirmed_reload(server: MetricsReloadStandIn, kind: ReloadKind = ReloadKind.VMALERT, *,
                     dry_run: bool = False) -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        endpoints = ReloadEndpoints(
            asgi_client(server.app()),
            {"vmalert": ReloadTarget(url="http://vmalert.insight-system:8880", kind=kind)},
            confirm_attempts=4,
            confirm_interval=0.01,
        )
        return await execute(action("http.reload", {"target": "vmalert"}), registry=ToolRegistry({"http": endpoints}),
                             dry_run=dry_run, now=NOW)
    return asyncio.run(go())


def test_vmalert_reload_is_confirmed_by_its_metrics() -> None:
    server = MetricsReloadStandIn()
    outcome = confirmed_reload(server)
    assert outcome.ok and server.reloads == 1
    assert "confirmed by vmalert_config_last_reload_successful=1 (new configuration loaded at" in outcome.output


def test_vmalert_rejecting_the_rules_fails_the_action_though_the_post_got_200() -> None:
    server = MetricsReloadStandIn(config_ok=False)
    outcome = confirmed_reload(server)
    assert outcome.state is ActionState.FAILED and outcome.error_type == "UpstreamError" and not outcome.retriable
    assert "vmalert rejected the new configuration" in outcome.output
    assert "vmalert_config_last_reload_successful=0, reload errors 0→1" in outcome.output


def test_vmalert_reload_of_unchanged_rules_succeeds_once_the_parse_had_time() -> None:
    outcome = confirmed_reload(MetricsReloadStandIn(config_changed=False))
    assert outcome.ok and "configuration unchanged" in outcome.output


def test_a_reload_vmalert_never_processes_is_not_reported_as_done() -> None:
    outcome = confirmed_reload(MetricsReloadStandIn(processes_reloads=False))
    assert outcome.state is ActionState.FAILED and outcome.error_type == "UnavailableError" and outcome.retriable
    assert "reload of vmalert not confirmed" in outcome.output


def test_an_endpoint_marked_vmalert_without_its_metrics_fails_before_reloading() -> None:
    server = MetricsReloadStandIn(exposes_metrics=False)
    outcome = confirmed_reload(server)
    assert outcome.state is ActionState.FAILED and server.reloads == 0
    assert "no vmalert_config_last_reload_successful metric" in outcome.output


def test_prometheus_reload_is_confirmed_with_one_read() -> None:
    server = MetricsReloadStandIn(kind="prometheus", synchronous=True)
    outcome = confirmed_reload(server, ReloadKind.PROMETHEUS)
    assert outcome.ok and "confirmed by prometheus_config_last_reload_successful=1" in outcome.output


def test_prometheus_broken_config_keeps_its_own_reason() -> None:
    outcome = confirmed_reload(MetricsReloadStandIn(kind="prometheus", synchronous=True, config_ok=False),
                               ReloadKind.PROMETHEUS)
    assert outcome.state is ActionState.FAILED and outcome.error_type == "UpstreamError" and not outcome.retriable
    assert "reload of vmalert failed: POST" in outcome.output and "parsing YAML file rules.yml" in outcome.output


def test_confirmed_reload_dry_run_calls_nothing() -> None:
    server = MetricsReloadStandIn()
    outcome = confirmed_reload(server, dry_run=True)
    assert outcome.ok and server.reloads == 0 and server.total == 0
    assert outcome.output == ("dry run: would POST http://vmalert.insight-system:8880/-/reload "
                              "and confirm via vmalert_config_last_reload_successful")


def test_reload_targets_are_validated_like_plain_urls() -> None:
    client = asgi_client(MetricsReloadStandIn().app())
    with pytest.raises(ValueError, match="credentials"):
        ReloadEndpoints(client, {"vmalert": ReloadTarget(url="http://u:p@vmalert:8880", kind=ReloadKind.VMALERT)})
    with pytest.raises(ValueError, match="kind"):
        ReloadTarget.model_validate({"url": "http://vmalert:8880", "kind": "nginx"})


SILENCE = {
    "alertname": "PrometheusRemoteWriteBehind",
    "cluster": "HK-DCE5-PLATFORM",
    "namespace": "insight-system",
    "duration": "2h",
    "comment": "remote write catching up after vminsert restart",
}


def silence(am: AlertmanagerStandIn | None, params: dict[str, str], *, dry_run: bool = False,
            action_id: str = "act-1") -> ExecutionOutcome:
    async def go() -> ExecutionOutcome:
        backends = {"alertmanager": AlertmanagerApi(asgi_client(am.app()))} if am else {}
        return await execute(action("alertmanager.silence", params, action_id=action_id),
                             registry=ToolRegistry(backends), dry_run=dry_run, now=NOW)
    return asyncio.run(go())


def test_silence_is_created_with_exact_matchers_and_bounded_time() -> None:
    am = AlertmanagerStandIn()
    outcome = silence(am, SILENCE)
    assert outcome.ok
    (created,) = am.silences.values()
    assert created["matchers"] == [
        {"name": "alertname", "value": "PrometheusRemoteWriteBehind", "isRegex": False, "isEqual": True},
        {"name": "cluster", "value": "HK-DCE5-PLATFORM", "isRegex": False, "isEqual": True},
        {"name": "namespace", "value": "insight-system", "isRegex": False, "isEqual": True},
    ]
    assert created["startsAt"] == "2026-11-25T10:00:00Z" and created["endsAt"] == "2026-11-25T12:00:00Z"
    assert created["createdBy"] == "rcaflow"
    assert created["comment"].endswith("[rcaflow action act-1]")
    assert created["id"] in outcome.output


def test_a_redelivered_silence_action_reuses_the_silence() -> None:
    am = AlertmanagerStandIn()
    first = silence(am, SILENCE)
    again = silence(am, SILENCE)
    other = silence(am, SILENCE, action_id="act-2")
    assert first.ok and again.ok and other.ok
    assert "already exists for action act-1" in again.output
    assert len(am.silences) == 2


def test_silence_dry_run_describes_without_calling() -> None:
    am = AlertmanagerStandIn()
    outcome = silence(am, SILENCE, dry_run=True)
    assert outcome.ok and am.silences == {}
    assert 'alertname="PrometheusRemoteWriteBehind"' in outcome.output and "for 2h" in outcome.output


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"duration": "30d"}, "duration"),
        ({"duration": "2 hours"}, "duration"),
        ({"alertname": 'x"} or {'}, "alertname"),
        ({"cluster": "a b"}, "cluster"),
        ({"comment": ""}, "comment"),
        ({"comment": "ok\r\nX-Injected: 1"}, "comment"),
        ({"matchers": "x"}, "matchers"),
    ],
)
def test_silence_params_are_validated(change: dict[str, str], field: str) -> None:
    am = AlertmanagerStandIn()
    outcome = silence(am, {**SILENCE, **change})
    assert outcome.state is ActionState.FAILED and outcome.error_type == "InvalidParamsError"
    assert field in outcome.output
    assert am.silences == {}


def test_silence_without_alertmanager_configured_fails_clearly() -> None:
    outcome = silence(None, SILENCE)
    assert outcome.state is ActionState.FAILED and "no Alertmanager is configured" in outcome.output
