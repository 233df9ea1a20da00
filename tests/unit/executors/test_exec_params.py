"""Parameter types: what may reach a Kubernetes name, an annotation or a silence from untrusted text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from executors.params import AnnotationKey, Duration, Namespace, ObjectName, Params, parse_duration


class P(Params):
    namespace: Namespace | None = None
    name: ObjectName | None = None
    key: AnnotationKey | None = None
    duration: Duration | None = None


@pytest.mark.parametrize("value", ["insight-system", "a", "ns1", "a" * 63])
def test_good_namespaces(value: str) -> None:
    assert P(namespace=value).namespace == value


@pytest.mark.parametrize(
    "value",
    ["", "Insight", "-a", "a-", "a.b", "a_b", "../etc", "a/b", "a b", "a\n", "a" * 64, "ns;rm -rf /", "ns%2F"],
)
def test_bad_namespaces(value: str) -> None:
    with pytest.raises(ValidationError, match="DNS-1123 label"):
        P(namespace=value)


@pytest.mark.parametrize("value", ["vmalert", "prometheus-insight-agent-kube-prometh-prometheus-0", "a.b-c"])
def test_good_object_names(value: str) -> None:
    assert P(name=value).name == value


@pytest.mark.parametrize("value", ["a..b", ".a", "A", "a/b", "a?x=1", "a#b", "a" * 254])
def test_bad_object_names(value: str) -> None:
    with pytest.raises(ValidationError):
        P(name=value)


@pytest.mark.parametrize("value", ["team", "insight.io/log-ignore", "example.com/a_b.c"])
def test_good_annotation_keys(value: str) -> None:
    assert P(key=value).key == value


@pytest.mark.parametrize(
    "value", ["", "a/", "/a", "UPPER.io/x", "kubernetes.io/x", "node.kubernetes.io/x", "k8s.io/x", "a b", "-a"]
)
def test_bad_annotation_keys(value: str) -> None:
    with pytest.raises(ValidationError):
        P(key=value)


def test_durations_are_bounded() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("7d") == timedelta(days=7)
    for bad in ["30s", "8d", "2H", "1h30m", "", "-1h", "9999999d"]:
        with pytest.raises((ValueError, ValidationError)):
            P(duration=bad)


def test_params_round_trip_to_strings() -> None:
    assert P(namespace="a", name="b").as_strings() == {"namespace": "a", "name": "b"}


@settings(deadline=None, max_examples=300, database=None)
@given(st.text(max_size=80))
def test_anything_accepted_as_a_name_is_safe_in_a_url_path(value: str) -> None:
    try:
        accepted = P(namespace=value).namespace
    except ValidationError:
        return
    assert accepted is not None
    assert set(accepted) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") and len(accepted) <= 63
