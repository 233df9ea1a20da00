"""The catalogue in ``schemas.operations`` and the classes in ``executors/`` describe the same operations.

Policies, the LLM prompt and ``/tools`` trust the catalogue's names, risks and
parameters without importing a single implementation, so this is where a drift
between the two would be caught.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from enum import Enum
from typing import Any

import httpx
import pytest

import executors
from executors.base import Executor
from executors.evidence.base import EvidenceTool
from executors.evidence.es import EsApi, EsConfig
from executors.evidence.netprobe import NetprobeConfig
from executors.evidence.prom import PromApi
from executors.evidence.tools import build_evidence_tools, evidence_class
from executors.llm.prompt import DEFAULT_EVIDENCE_TOOLS
from executors.registry import DEFAULT_TOOLS, ToolRegistry, resolve
from schemas.operations import ACTIONS, BY_NAME, EVIDENCE, OPERATIONS, Operation, OperationKind, QueryForm
from tests.unit.executors.evidence.standins import K8sReadStandIn
from tests.unit.executors.exec_helpers import k8s_api


def _implementation(op: Operation) -> type[Any]:
    cls = resolve(op.implementation)
    assert isinstance(cls, type), f"{op.name}: {op.implementation} is not a class"
    return cls


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.name)
def test_each_entry_is_implemented_by_a_class_that_declares_the_same_operation(op: Operation) -> None:
    cls = _implementation(op)
    base = EvidenceTool if op.kind is OperationKind.EVIDENCE else Executor
    assert issubclass(cls, base) and not inspect.isabstract(cls), f"{op.name}: {cls} is not a concrete {base}"
    assert cls.spec.name == op.name
    assert cls.spec.risk is op.risk
    fields = cls.spec.params.model_fields
    assert set(fields) == set(op.params), f"{op.name}: model has {sorted(fields)}, catalogue {sorted(op.params)}"
    for name, param in op.params.items():
        assert fields[name].is_required() is param.required, f"{op.name}.{name}: required differs"
        annotation = fields[name].annotation
        enum_values = ({str(m.value) for m in annotation}
                       if inspect.isclass(annotation) and issubclass(annotation, Enum) else set())
        assert enum_values == set(param.values), f"{op.name}.{name}: allowed values differ"


@pytest.mark.parametrize("op", EVIDENCE, ids=lambda op: op.name)
def test_an_evidence_entry_query_form_is_how_its_tool_reads_a_plan_step(op: Operation) -> None:
    cls = evidence_class(op)
    whole_text = op.query in (QueryForm.PROMQL, QueryForm.ES_FILTER)
    # The default parse_query hands the whole text over as ``query``; pairs and targets are split by the tool.
    assert (cls.parse_query is EvidenceTool.parse_query) is whole_text
    if whole_text:
        assert "query" in op.params


@pytest.mark.parametrize("op", [op for op in ACTIONS if op.undoable], ids=lambda op: op.name)
def test_an_undoable_action_watches_its_effect(op: Operation) -> None:
    """``on_failure: undo`` only means something when the executor can see that the effect never showed."""
    assert _implementation(op)._check is not Executor._check


def _concrete_operation_classes() -> dict[str, type[Any]]:
    found: dict[str, type[Any]] = {}
    for info in pkgutil.walk_packages(executors.__path__, "executors."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or inspect.isabstract(cls):
                continue
            if issubclass(cls, Executor | EvidenceTool):
                found[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return found


def test_every_concrete_operation_class_in_executors_is_in_the_catalogue() -> None:
    classes = _concrete_operation_classes()
    for target, cls in classes.items():
        op = BY_NAME.get(cls.spec.name)
        assert op is not None, f"{target} implements {cls.spec.name}, which is not in schemas.operations"
        assert op.implementation == target, f"{cls.spec.name} is implemented by {target}, catalogue says otherwise"
    assert set(classes) == {op.implementation for op in OPERATIONS}


def test_the_action_registry_is_the_catalogue_actions() -> None:
    assert dict(DEFAULT_TOOLS) == {op.name: op.implementation for op in ACTIONS}
    registry = ToolRegistry()
    assert {spec.name for spec in registry.specs()} == {op.name for op in ACTIONS}


def test_every_evidence_family_has_a_backend_argument_and_builds_every_operation() -> None:
    families = {op.family for op in EVIDENCE}
    assert families <= set(inspect.signature(build_evidence_tools).parameters)
    client = httpx.AsyncClient()
    tools = build_evidence_tools(
        prom=PromApi.create(client, "http://prom.test"),
        k8s=k8s_api(K8sReadStandIn().app()),
        es=EsApi.create(client, EsConfig(base_url="http://es.test")),
        netprobe=NetprobeConfig(),
        http_client=client,
    )
    assert list(tools) == [op.name for op in EVIDENCE]
    assert all(tool.spec.name == name for name, tool in tools.items())
    assert build_evidence_tools() == {}


def test_the_llm_is_offered_only_catalogue_evidence_it_may_ask_for() -> None:
    offered = {f"{family}.{op}" for family, ops in DEFAULT_EVIDENCE_TOOLS.items() for op in ops}
    assert offered == {op.name for op in EVIDENCE if op.offered_to_llm}
    assert not any(name.startswith("netprobe.") for name in offered)  # alert text must not pick what we probe
