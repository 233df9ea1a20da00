"""The HTTP contract: clear 4xx for bad input, 401 without the tenant's token, 503 when the broker is down."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.limits import MAX_EVENT_BYTES, MAX_WEBHOOK_BYTES
from streams.api.app import TenantAuth, create_app
from streams.api.tools import build_tools_router
from streams.settings import Settings
from streams.stages.metrics import StageMetrics
from streams.wiring.runtime import build_stages

SEED = {
    "alert": "PrometheusRemoteWriteBehind",
    "severity": "P2",
    "labels": {"cluster": "HK-DCE5-PLATFORM", "namespace": "insight-system",
               "workload": "prometheus-insight-agent-kube-prometh-prometheus-0", "component": "prometheus"},
    "metrics": {"times": 2, "first_occur": "2025-09-23T00:00:00Z"},
    "raw": {"mail_subject": "Control Cluster Details", "mail_id": "<1@x>"},
}


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def client() -> Iterator[TestClient]:
    registry = CollectorRegistry()
    stages = build_stages(Settings(), StageMetrics(registry, tenants=["acme", "other"]))
    # Nothing listens there: every publish must end in a clear 503, never a hang or a 2xx.
    publisher = KafkaPublisher(f"127.0.0.1:{_dead_port()}", make_codec(None), delivery_timeout_ms=1500,
                               extra={"socket.connection.setup.timeout.ms": 1000, "message.timeout.ms": 1500})
    auth = TenantAuth({"acme": SecretStr("s3cret"), "other": SecretStr("0ther")}, "default")
    app = create_app(normalize=stages.normalize, publisher=publisher, auth=auth, registry=registry)
    with TestClient(app) as test_client:
        yield test_client
    publisher.close_sync(timeout=0)


AUTH = {"Authorization": "Bearer s3cret"}


def test_missing_token_is_401(client: TestClient) -> None:
    response = client.post("/events", json=SEED)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_names_the_tenant_and_must_match_its_token(client: TestClient) -> None:
    # Correct tenant + token gets past auth (then the dead broker answers 503).
    assert client.post("/webhook", json={"alerts": [{"labels": {"alertname": "X"}}]},
                       headers=_basic("acme", "s3cret")).status_code == 503
    # Another tenant's token under this tenant's name is refused.
    assert client.post("/events", json=SEED, headers=_basic("acme", "0ther")).status_code == 401
    assert client.post("/events", json=SEED, headers={"Authorization": "Basic !!!"}).status_code == 401


def test_wrong_token_is_401(client: TestClient) -> None:
    response = client.post("/events", json=SEED, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"severity": "P9"}, "severity"),
        ({"alert": ""}, "alert"),
        ({"metrics": {"times": -1}}, "metrics.times"),
        ({"unexpected": 1}, "unexpected"),
        ({"labels": {"cluster": 5}}, "labels.cluster"),
    ],
)
def test_bad_event_names_the_wrong_field(client: TestClient, patch: dict[str, object], field: str) -> None:
    response = client.post("/events", json={**SEED, **patch}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(field)


def test_broker_down_is_503_with_retry_after(client: TestClient) -> None:
    response = client.post("/events", json=SEED, headers=AUTH)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    metrics = client.get("/metrics").text
    assert 'rcaflow_stage_failed_total{error_type="PublishError",stage="api_events",tenant="acme"}' in metrics


def test_webhook_without_alerts_is_422(client: TestClient) -> None:
    response = client.post("/webhook", json={"version": "4", "alerts": []}, headers=AUTH)
    assert response.status_code == 422
    assert "alerts" in response.json()["detail"]


def test_health_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


# --------------------------------------------------------------------------- the edge: auth first, sizes, labels


def test_an_anonymous_body_is_never_parsed(client: TestClient) -> None:
    # Malformed JSON without a token: 401 (the token is checked first), not 422 (which would mean parsed).
    for path in ("/events", "/webhook"):
        response = client.post(path, content=b"{not json", headers={"Content-Type": "application/json"})
        assert response.status_code == 401, (path, response.text)


def test_a_body_over_the_routes_limit_is_413_with_the_limit(client: TestClient) -> None:
    big = b'{"alert": "' + b"x" * (MAX_EVENT_BYTES + 1) + b'"}'
    response = client.post("/events", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["reason"] == "body_too_large" and str(MAX_EVENT_BYTES) in response.json()["detail"]


def test_a_streamed_body_without_length_is_stopped_at_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"alerts": ['
        for _ in range(MAX_WEBHOOK_BYTES // 65536 + 2):
            yield b" " * 65536
        yield b"]}"

    response = client.post("/webhook", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert "/webhook accepts at most" in response.json()["detail"]


def test_malformed_requests_to_random_paths_add_no_metric_series() -> None:
    registry = CollectorRegistry()
    stages = build_stages(Settings(), StageMetrics(registry))
    publisher = KafkaPublisher(f"127.0.0.1:{_dead_port()}", make_codec(None))
    app = create_app(normalize=stages.normalize, publisher=publisher, registry=registry,
                     auth=TenantAuth({"acme": SecretStr("s3cret")}, "default"))
    app.include_router(build_tools_router(evidence={}, scopes={}))
    with TestClient(app) as client:
        for n in range(5):
            response = client.post(f"/tools/random-{n}", json={"operation": 5}, headers=AUTH)
            assert response.status_code == 422
        metrics = client.get("/metrics").text
    publisher.close_sync(timeout=0)
    assert "random-" not in metrics
    series = [line for line in metrics.splitlines() if line.startswith("rcaflow_stage_failed_total{")]
    assert series == ['rcaflow_stage_failed_total{error_type="RequestValidationError",stage="api/tools/{family}",'
                      'tenant="_other"} 5.0']
