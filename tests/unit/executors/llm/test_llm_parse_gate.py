"""Answer parsing and the policy gate as pure functions."""

from __future__ import annotations

import json

import pytest

from executors.llm import ActionParam, ActionProposal, AllowedAction, AllowedParam, LlmAnswer, gate, parse_answer
from executors.llm.answer import AnswerProblem, SchemaLimits, answer_json_schema
from tests.unit.executors.llm.standin import answer_json


@pytest.mark.parametrize(
    ("content", "finish", "kind"),
    [
        (None, None, "empty"),
        ("   ", "stop", "empty"),
        ("I could not decide.", "stop", "no_json"),
        ('{"evidence_plan": [], "diagnosis": {"summary": "disk', "stop", "truncated"),
        ('{"evidence_plan": [], "diagnosis": {"summary": "disk', "length", "truncated"),
        ('{"diagnosis": "disk is slow"}', "stop", "schema"),
        (answer_json(confidence=1.5), "stop", "schema"),
        (answer_json().replace('"rollback"', '"extra": 1, "rollback"'), "stop", "schema"),
        (answer_json().replace("0.8", '"0.8"'), "stop", "schema"),
    ],
    ids=[
        "none",
        "blank",
        "prose-only",
        "truncated",
        "length",
        "wrong-shape",
        "confidence-range",
        "extra-field",
        "string-number",
    ],
)
def test_invalid_replies_are_problems_of_the_right_kind(content: str | None, finish: str | None, kind: str) -> None:
    problem = parse_answer(content, finish)
    assert isinstance(problem, AnswerProblem) and problem.kind == kind, problem


def test_schema_is_strict_for_structured_output() -> None:
    schema = answer_json_schema()
    assert schema["additionalProperties"] is False
    for definition in schema["$defs"].values():
        assert definition["additionalProperties"] is False
        assert sorted(definition["required"]) == sorted(definition["properties"])
    assert "maxLength" not in json.dumps(schema)


ALLOWED = [
    AllowedAction(
        name="scale_vminsert",
        tool="k8s",
        operation="scale",
        params={
            "namespace": AllowedParam(values=("insight-system",)),
            "name": AllowedParam(values=("vminsert-insight",)),
            "replicas": AllowedParam(values=("2", "3", "4"), default="3"),
        },
    ),
    AllowedAction(
        name="annotate",
        tool="k8s",
        operation="annotate_pod",
        params={"key": AllowedParam(pattern=r"fluentbit\.io/exclude"), "free": AllowedParam()},
    ),
]


def proposal(name: str, **params: str) -> ActionProposal:
    return ActionProposal(name=name, reason="", params=[ActionParam(name=k, value=v) for k, v in params.items()])


def test_gate_fills_bound_and_default_params_and_keeps_policy_risk() -> None:
    result = gate([proposal("scale_vminsert")], ALLOWED, "inc-9")
    assert result.rejected == []
    assert result.accepted[0].params == {"namespace": "insight-system", "name": "vminsert-insight", "replicas": "3"}
    assert (result.accepted[0].tool, result.accepted[0].operation) == ("k8s", "scale")


@pytest.mark.parametrize(
    ("prop", "reason"),
    [
        (proposal("scale_vminsert", replicas="40"), "'40' is not one of the allowed values"),
        (proposal("scale_vminsert", namespace="kube-system"), "'kube-system' is not one of the allowed values"),
        (proposal("scale_vminsert", force="yes"), "parameter(s) not in policy: 'force'"),
        (proposal("annotate", key="fluentbit.io/exclude"), "missing parameter free"),
        (proposal("annotate", key="x", free="y"), "does not match"),
        (proposal("annotate", key="fluentbit.io/exclude", free="y"), "the policy allows no value"),
        (proposal("rm -rf /\x00" + "x" * 150), "not allowed for this alert class"),
    ],
)
def test_gate_rejects_with_a_reason(prop: ActionProposal, reason: str) -> None:
    result = gate([prop], ALLOWED, "inc-9")
    assert result.accepted == []
    assert reason in result.rejected[0].reason
    assert len(result.rejected[0].name) <= 70 and "\x00" not in result.rejected[0].name


def test_gate_rejects_a_second_proposal_of_the_same_action() -> None:
    result = gate([proposal("scale_vminsert"), proposal("scale_vminsert", replicas="4")], ALLOWED, "inc-9")
    assert [a.params["replicas"] for a in result.accepted] == ["3"]
    assert result.rejected[0].reason == "action proposed twice"


def test_a_valid_answer_round_trips() -> None:
    parsed = parse_answer(answer_json())
    assert isinstance(parsed, LlmAnswer) and parsed.diagnosis.confidence == 0.8


def test_the_schema_offers_only_catalogue_evidence_by_enum() -> None:
    """A grammar-compiling server (llama.cpp) cannot then write a tool or operation outside the catalogue."""
    schema = answer_json_schema({"prom": ("query", "query_range"), "k8s": ("logs",)})
    request = schema["$defs"]["EvidenceRequest"]["properties"]
    assert request["tool"]["enum"] == ["k8s", "prom"]
    assert request["operation"]["enum"] == ["logs", "query", "query_range"]


def test_schema_limits_are_sent_only_when_asked_and_never_loosen_the_contract() -> None:
    limits = SchemaLimits(max_chars=160, max_items=2)
    schema = answer_json_schema(limits=limits)
    defs = schema["$defs"]
    assert defs["Diagnosis"]["properties"]["summary"]["maxLength"] == 160
    assert defs["EvidenceRequest"]["properties"]["query"]["maxLength"] == 160
    assert schema["properties"]["evidence_plan"]["maxItems"] == 2
    assert schema["properties"]["rollback"]["items"]["maxLength"] == 160
    # An action's parameters keep the contract's bound, so a required one is never cut off by the grammar.
    assert defs["ActionProposal"]["properties"]["params"]["maxItems"] == 10
    # Limits above the contract's own are not sent: the contract's stands.
    loose = answer_json_schema(limits=SchemaLimits(max_chars=2000, max_items=10))
    assert loose["$defs"]["ActionParam"]["properties"]["name"]["maxLength"] == 200
    assert "minimum" not in json.dumps(schema) and "title" not in json.dumps(schema)
