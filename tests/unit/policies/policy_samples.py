"""Realistic alert labels per class, as the DCE 5 mail and the Alertmanager webhook give them."""

from __future__ import annotations

from datetime import UTC, datetime

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

CLUSTER = "HK-DCE5-PLATFORM"

#: One realistic event per class (labels as the DCE 5 mail / Alertmanager webhook give them).
REALISTIC: dict[str, tuple[str, dict[str, str]]] = {
    "jenkins_restart": (
        "JenkinsRestarted",
        {"cluster": CLUSTER, "namespace": "amamba-system", "workload": "amamba-jenkins-0", "pod": "amamba-jenkins-0"},
    ),
    "vmalert_config_reload_failure": (
        "ConfigurationReloadFailure",
        {
            "cluster": CLUSTER,
            "namespace": "insight-system",
            "workload": "vmalert-insight-victoria-metrics-k8s-stack-7b5c9d8f6-hk2lq",
        },
    ),
    "prometheus_remote_write_behind": (
        "PrometheusRemoteWriteBehind",
        {
            "cluster": CLUSTER,
            "namespace": "insight-system",
            "workload": "prometheus-insight-agent-kube-prometh-prometheus-0",
            "component": "prometheus",
        },
    ),
    "prometheus_remote_write_desired_shards": (
        "PrometheusRemoteWriteDesiredShards",
        {
            "cluster": CLUSTER,
            "namespace": "insight-system",
            "workload": "prometheus-insight-agent-kube-prometh-prometheus-0",
        },
    ),
    "prometheus_remote_storage_failures": (
        "PrometheusRemoteStorageFailures",
        {
            "cluster": CLUSTER,
            "namespace": "insight-system",
            "workload": "prometheus-insight-agent-kube-prometh-prometheus-0",
        },
    ),
    "log_flood": (
        "容器日志泛滥",
        {"cluster": CLUSTER, "namespace": "shop", "workload": "order-api-5d8f7c9b6-x2x7k"},
    ),
    "rule_evaluation_failures": (
        "RecordingRulesError",
        {
            "cluster": CLUSTER,
            "namespace": "insight-system",
            "workload": "vmalert-insight-victoria-metrics-k8s-stack-7b5c9d8f6-hk2lq",
            "component": "vmalert",
        },
    ),
    "vminsert_write_errors": (
        "RPCErrors",
        {
            "cluster": CLUSTER,
            "namespace": "insight-system",
            "workload": "vminsert-insight-victoria-metrics-k8s-stack-6f9c7d5b4-q7w2e",
            "job": "vminsert-insight-victoria-metrics-k8s-stack",
            "component": "vminsert",
        },
    ),
    "etcd_latency": (
        "etcdHighFsyncDurations",
        {"cluster": CLUSTER, "namespace": "kube-system", "workload": "etcd-hk-dce5-master-01", "job": "etcd"},
    ),
}
