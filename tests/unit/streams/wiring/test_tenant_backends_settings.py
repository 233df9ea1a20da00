"""A tenant's own evidence backends: used backend by backend, and never given another tenant's (the global) login."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from executors.evidence.auth import BackendAuth
from streams.settings import EvidenceSettings, KubernetesClusterSettings, Settings, TenantEvidenceSettings
from streams.wiring.tenants import tenant_evidence_settings

GLOBAL = Settings(evidence=EvidenceSettings(
    prometheus_url="https://prom.shared.test", prometheus_auth=BackendAuth(bearer_token=SecretStr("global-secret")),
    elasticsearch_url="https://es.shared.test", elasticsearch_auth=BackendAuth(api_key=SecretStr("global-key")),
    kubeconfig=Path("/etc/shared/kubeconfig")))


def test_a_tenant_url_never_carries_the_global_login() -> None:
    own = tenant_evidence_settings(GLOBAL, TenantEvidenceSettings(prometheus_url="https://vmselect.test/select/7/prometheus"))
    assert own.evidence.prometheus_url == "https://vmselect.test/select/7/prometheus"
    assert own.evidence.prometheus_auth.bearer_token is None
    # Backends the tenant did not name stay the global ones, with their login.
    assert own.evidence.elasticsearch_url == "https://es.shared.test"
    assert own.evidence.elasticsearch_auth.api_key is not None
    assert GLOBAL.evidence.prometheus_url == "https://prom.shared.test"  # the global settings are untouched


def test_a_tenant_cluster_replaces_every_global_kubernetes_source() -> None:
    own = tenant_evidence_settings(GLOBAL, TenantEvidenceSettings(
        cluster=KubernetesClusterSettings(server="https://k8s.acme.test:6443", token=SecretStr("t"))))
    assert own.evidence.kubeconfig is None and own.evidence.in_cluster is False
    assert own.evidence.cluster is not None and own.evidence.cluster.server == "https://k8s.acme.test:6443"
