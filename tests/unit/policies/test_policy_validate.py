"""Untrusted text is validated or escaped before it reaches PromQL or a Kubernetes name."""

from __future__ import annotations

import pytest

from policies import LabelValidationError, is_valid, promql_escape, promql_regex_escape, validate
from policies.validate import deployment_of_pod, statefulset_of_pod

HOSTILE = [
    'a"}) or vector(1) #',
    'x", namespace=~".*',
    "a\\",
    "kube-system\nfoo",
    "../../etc/passwd",
    "$(rm -rf /)",
    "a;b",
    "UPPER",
    "",
    "a" * 254,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_not_kubernetes_names(value: str) -> None:
    assert not is_valid("dns1123_label", value)
    assert not is_valid("dns1123_subdomain", value)


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("dns1123_label", "insight-system"),
        ("dns1123_subdomain", "prometheus-insight-agent-kube-prometh-prometheus-0"),
        ("dns1123_subdomain", "vmalert.example"),
        ("label_value", "HK-DCE5-PLATFORM"),
        ("alert_name", "PrometheusRemoteWriteBehind"),
        ("alert_name", "容器日志泛滥"),
        ("annotation_key", "fluentbit.io/exclude"),
        ("annotation_key", "insight.opentelemetry.io/log-ignore"),
        ("duration", "2h"),
        ("small_int", "3"),
        ("instance", "10.233.97.18:8080"),
        ("instance", "[fe80::1]:9090"),
        ("safe_text", "rcaflow incident abc: flapping 日志泛滥 silenced by policy"),
    ],
)
def test_real_values_pass_their_format(fmt: str, value: str) -> None:
    assert validate(fmt, value) == value


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("label_value", 'HK"}'),
        ("alert_name", 'Foo"} or vector(1)'),
        ("duration", "2h; rm"),
        ("small_int", "-1"),
        ("small_int", "100000"),
        ("safe_text", 'say "hi"'),
        ("safe_text", "a\nb"),
        ("annotation_key", "bad key"),
        ("instance", "host:80/path"),
    ],
)
def test_malformed_values_fail_their_format(fmt: str, value: str) -> None:
    with pytest.raises(LabelValidationError):
        validate(fmt, value)


def test_unknown_format_is_never_valid() -> None:
    assert not is_valid("no_such_format", "anything")


def test_error_message_truncates_the_untrusted_value() -> None:
    with pytest.raises(LabelValidationError) as info:
        validate("dns1123_label", "x" * 500, what="label namespace")
    assert "x" * 100 not in str(info.value)
    assert "dns1123_label" in str(info.value)


def _unescaped_quotes(text: str) -> int:
    count, i = 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        count += text[i] == '"'
        i += 1
    return count


@pytest.mark.parametrize("value", HOSTILE)
def test_promql_escape_keeps_hostile_text_inside_the_string(value: str) -> None:
    query = f'up{{namespace="{promql_escape(value)}"}}'
    assert _unescaped_quotes(query) == 2
    assert "\n" not in query


def test_promql_escape_exact_output() -> None:
    assert promql_escape('a"}) or vector(1) #') == 'a\\"}) or vector(1) #'
    assert promql_escape("a\\") == "a\\\\"
    assert promql_escape("line\nnext\x01") == "line\\nnext\\x01"


def test_promql_regex_escape_matches_only_the_literal() -> None:
    assert promql_regex_escape("vminsert.x") == "vminsert\\\\.x"
    assert promql_regex_escape('.*"') == '\\\\.\\\\*\\"'


def test_workload_names_from_pod_names() -> None:
    assert statefulset_of_pod("amamba-jenkins-0") == "amamba-jenkins"
    assert statefulset_of_pod("amamba-jenkins") == "amamba-jenkins"
    assert deployment_of_pod("vmalert-insight-victoria-metrics-k8s-stack-7b5c9d8f6-hk2lq") == (
        "vmalert-insight-victoria-metrics-k8s-stack"
    )
    assert deployment_of_pod("vmalert") == "vmalert"
