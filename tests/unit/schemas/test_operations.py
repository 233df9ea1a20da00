"""The operation catalogue refuses entries that would let a reader draw a wrong conclusion from it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import schemas.operations
from schemas.operations import (
    ACTIONS,
    BY_NAME,
    EVIDENCE,
    OPERATIONS,
    Operation,
    OperationKind,
    Param,
    QueryForm,
    by_family,
    evidence_families,
)
from schemas.records import Risk


def _op(**overrides: Any) -> Operation:
    fields: dict[str, Any] = {
        "tool": "k8s", "operation": "pods", "kind": OperationKind.EVIDENCE, "risk": Risk.READ,
        "description": "pods", "implementation": "executors.evidence.k8s:Pods",
        "params": {"namespace": Param("dns1123_label")}, "query": QueryForm.PAIRS,
    }
    fields.update(overrides)
    return Operation(**fields)


def test_a_well_formed_entry_is_accepted_and_its_params_cannot_be_changed_afterwards() -> None:
    op = _op()
    assert (op.name, op.family, op.key) == ("k8s.pods", "k8s", ("k8s", "pods"))
    with pytest.raises(TypeError):
        op.params["extra"] = Param(None)  # type: ignore[index]


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"risk": Risk.LOW}, "read-only"),
        ({"query": None}, "how its query is written"),
        ({"undoable": True}, "no inverse"),
        ({"kind": OperationKind.ACTION, "query": None, "offered_to_llm": True}, "only evidence"),
        ({"kind": OperationKind.ACTION, "query": None, "params": {"q": Param(None)}}, "needs a format"),
        ({"kind": OperationKind.ACTION, "query": None, "inverse_only": True, "restarts_workload": True}, "an inverse"),
        ({"implementation": "executors/evidence/k8s.py"}, "module:Class"),
        ({"tool": "K8s"}, "identifiers"),
        ({"description": "two\nlines"}, "one-line"),
    ],
)
def test_an_entry_that_contradicts_itself_is_refused(overrides: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        _op(**overrides)


def test_names_are_unique_and_split_by_kind() -> None:
    assert len(BY_NAME) == len(OPERATIONS) == len(EVIDENCE) + len(ACTIONS)
    assert all(op.kind is OperationKind.EVIDENCE and op.risk is Risk.READ for op in EVIDENCE)


def test_by_family_keeps_catalogue_order() -> None:
    assert by_family(EVIDENCE)["es"] == ("search", "count")
    assert evidence_families() == {"prom", "k8s", "es", "netprobe"}


def test_every_implemented_evidence_operation_can_be_named_by_a_policy() -> None:
    assert {"k8s.owners", "netprobe.dns", "netprobe.tcp", "netprobe.http"} <= {
        op.name for op in OPERATIONS if op.policy_nameable and op.kind is OperationKind.EVIDENCE
    }
    assert {op.name for op in ACTIONS if op.inverse_only} == {
        "k8s.undo_restart", "k8s.remove_pod_annotation", "alertmanager.expire_silence"}


def test_the_catalogue_stays_pure_data() -> None:
    """schemas is the bottom layer: naming an implementation must not import it."""
    tree = ast.parse(Path(schemas.operations.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {m for m in imported if m and m.split(".")[0] in {"executors", "policies", "producers", "streams"}}
