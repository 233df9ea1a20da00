"""An evidence step's ``alternatives`` obey the same template rules as its query, checked at load."""

from __future__ import annotations

from pathlib import Path

from policies import load_policies
from tests.unit.policies.test_policy_loader import MINIMAL, _errors, _write

QUERY = """        query: 'max(lag{namespace="${namespace}"})'\n"""


def test_alternatives_load_and_keep_their_order(tmp_path: Path) -> None:
    alternatives = """        alternatives: ['max(lag_v1{namespace="${namespace}"})', 'max(lag_v0)']\n"""
    text = MINIMAL.replace(QUERY, QUERY + alternatives)
    cls = load_policies(_write(tmp_path, text)).get("demo")
    assert cls is not None
    assert cls.spec.evidence[0].alternatives == ['max(lag_v1{namespace="${namespace}"})', "max(lag_v0)"]


def test_an_unquoted_placeholder_in_an_alternative_is_a_load_error_where_it_is(tmp_path: Path) -> None:
    text = MINIMAL.replace(QUERY, QUERY + """        alternatives: ['max(lag) by (${namespace})']\n""")
    errors = _errors(tmp_path, text)
    assert any("classes[0].evidence[0].alternatives[0]" in e for e in errors), errors


def test_an_undeclared_variable_in_an_alternative_is_a_load_error(tmp_path: Path) -> None:
    text = MINIMAL.replace(QUERY, QUERY + """        alternatives: ['max(lag{job="${jobname}"})']\n""")
    errors = _errors(tmp_path, text)
    assert any("alternatives[0]" in e and "jobname" in e for e in errors), errors
