"""The PromQL second belt: what an injected label would look like is refused; escaped labels pass as strings."""

from __future__ import annotations

import pytest

from executors.evidence.promql import check_promql
from policies import promql_escape

HOSTILE = ['a"}) or vector(1) #', "../../etc", "x\n", 'q"\\', "x" * 10_000, "`", "'"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_label_escaped_by_policies_stays_inside_its_string(value: str) -> None:
    query = f'up{{namespace="{promql_escape(value)}"}}'
    assert check_promql(query, max_chars=50_000) == query


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ('up{namespace="a"} or vector(1) #"}', "comment"),
        ('up{namespace="a"}) or vector(1)', "unbalanced"),
        ('up{namespace="a}', "unterminated"),
        ('sum(rate(x[5m])', "unclosed"),
        ('up{a="x\ny"}', "line break"),
        ("up\x00", "control"),
        ("   ", "empty"),
    ],
)
def test_broken_or_injected_queries_are_refused(query: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_promql(query)


def test_a_query_over_the_length_bound_is_refused_without_echoing_it() -> None:
    query = 'up{a="' + "z" * 5000 + '"}'
    with pytest.raises(ValueError) as info:
        check_promql(query)
    assert "zzz" not in str(info.value)


def test_real_policy_queries_pass() -> None:
    from policies import load_policies

    steps = [s for c in load_policies().document.classes for s in c.evidence if s.tool == "prom"]
    assert steps
    for step in steps:
        check_promql(step.query.replace("${namespace}", "insight-system").replace("${pod}", "p-0")
                     .replace("${deployment|re}", "vminsert"))
