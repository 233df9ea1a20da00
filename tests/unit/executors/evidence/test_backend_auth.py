"""Logins of the evidence backends: one way at a time, sent as a header, never shown in the evidence record."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from executors.evidence.auth import BackendAuth
from executors.evidence.es import Count, EsApi, EsConfig
from executors.evidence.prom import PromApi, Query
from streams.settings import load_settings, secret_values

TOKEN = "prom-token-not-in-records"


def test_one_way_to_log_in() -> None:
    with pytest.raises(ValidationError, match="only one"):
        BackendAuth(username="u", password=SecretStr("p"), api_key=SecretStr("k"))
    with pytest.raises(ValidationError, match="both"):
        BackendAuth(username="u")
    assert BackendAuth(api_key=SecretStr("abc")).headers() == {"Authorization": "ApiKey abc"}
    assert BackendAuth(username="u", password=SecretStr("p")).headers() == {"Authorization": "Basic dTpw"}
    assert "p" not in repr(BackendAuth(username="u", password=SecretStr("p")).password)


def test_prometheus_gets_the_bearer_token_and_the_record_does_not() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, text="Unauthorized")
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"job": "etcd"}, "value": [1764072000, "0.5"]}]}})

    async def go() -> str:
        api = PromApi.create(httpx.AsyncClient(transport=httpx.MockTransport(answer)), "http://prom.test:9090",
                             auth=BackendAuth(bearer_token=SecretStr(TOKEN)))
        obs = await Query(api).observe_query("up")
        await api.aclose()
        return obs.evidence.model_dump_json()

    record = asyncio.run(go())
    assert seen and '"success"' in record and TOKEN not in record


def test_elasticsearch_gets_the_api_key() -> None:
    async def go() -> list[str]:
        sent: list[str] = []

        def answer(request: httpx.Request) -> httpx.Response:
            sent.append(request.headers.get("authorization", ""))
            return httpx.Response(200, json={"hits": {"total": {"value": 0}, "hits": []}})

        api = EsApi.create(httpx.AsyncClient(transport=httpx.MockTransport(answer)),
                           EsConfig(base_url="http://es.test:9200", auth=BackendAuth(api_key=SecretStr("k3y"))))
        await Count(api).observe_query('kubernetes.pod_name:"a-0"')
        return sent

    assert asyncio.run(go()) == ["ApiKey k3y"]


def test_logins_come_from_env_and_are_redacted_from_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCAFLOW_EVIDENCE__PROMETHEUS_AUTH__BEARER_TOKEN", TOKEN)
    monkeypatch.setenv("RCAFLOW_KB__AUTH__API_KEY", "kb-key")
    settings = load_settings()
    assert settings.evidence.prometheus_auth.headers() == {"Authorization": f"Bearer {TOKEN}"}
    assert {TOKEN, "kb-key"} <= set(secret_values(settings))
    assert TOKEN not in json.dumps(settings.model_dump(mode="json"))
