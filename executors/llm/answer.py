"""The answer contract: what the model must return, its JSON schema, and strict parsing of raw text.

Parsing never guesses: it finds one JSON object (bare, fenced, or inside prose), and either it
validates against :class:`LlmAnswer` or the caller gets an :class:`AnswerProblem` whose ``reason``
is precise enough to send back to the model for one repair attempt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Short = Annotated[str, Field(max_length=200)]
Text = Annotated[str, Field(max_length=2000)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class EvidenceRequest(_Strict):
    """Read-only evidence the model would like to see (tool/operation from the evidence tools)."""

    tool: Short
    operation: Short
    query: Text
    purpose: Text


class Diagnosis(_Strict):
    summary: Annotated[str, Field(min_length=1, max_length=2000)]
    cause: Text
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]


class ActionParam(_Strict):
    name: Short
    value: Short


class ActionProposal(_Strict):
    """An action by its policy name; tool, operation, risk and approval come from the policy, not from here."""

    name: Short
    params: Annotated[list[ActionParam], Field(max_length=_CONTRACT_PARAMS)]
    reason: Text


class LlmAnswer(_Strict):
    evidence_plan: Annotated[list[EvidenceRequest], Field(max_length=10)]
    diagnosis: Diagnosis
    actions: Annotated[list[ActionProposal], Field(max_length=10)]
    rollback: Annotated[list[Text], Field(max_length=10)]


_UNSENT_KEYWORDS = frozenset({"title", "minLength", "maxLength", "minimum", "maximum", "maxItems", "minItems"})
#: With :class:`SchemaLimits` these stay (tightened); a grammar-compiling server enforces them while generating.
_LIMIT_KEYWORDS = frozenset({"maxLength", "maxItems"})
_CONTRACT_PARAMS = 10


class SchemaLimits(BaseModel):
    """How much the model may write, sent in the JSON schema as ``maxLength``/``maxItems``.

    Why: a server that compiles the schema into a grammar (llama.cpp's ``llama-server``, vLLM) then cannot
    generate a longer string or list, so a small model that rambles inside one field ends its JSON
    within ``max_tokens`` instead of being cut off (``finish_reason=length``) and losing the answer.
    Off by default because several hosted servers reject these keywords in strict mode.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The longest string in any field (names stay at their own, shorter limit).
    max_chars: int = Field(default=240, ge=20, le=2000)
    #: The longest list (evidence_plan, actions, params, rollback).
    max_items: int = Field(default=3, ge=1, le=10)


def answer_json_schema(
    evidence_tools: Mapping[str, Sequence[str]] | None = None, limits: SchemaLimits | None = None
) -> dict[str, Any]:
    """The schema sent as ``response_format.json_schema`` (OpenAI strict subset).

    ``evidence_tools`` (tool -> operations, from the catalogue) become enums for ``evidence_plan``'s
    ``tool`` and ``operation``, so a grammar-constrained model can only ask for catalogue evidence; the
    round still refuses anything else (a server may ignore the schema). Length and list limits are
    sent only with ``limits``, tightened to them; the local validation enforces the contract's own anyway.
    """
    keep = _LIMIT_KEYWORDS if limits is not None else frozenset()
    schema: dict[str, Any] = _strip(LlmAnswer.model_json_schema(), keep, limits)
    if limits is not None:
        # An action's parameters keep the contract's own bound: capping them could drop a required one.
        schema["$defs"]["ActionProposal"]["properties"]["params"]["maxItems"] = _CONTRACT_PARAMS
    if evidence_tools:
        request = schema["$defs"]["EvidenceRequest"]["properties"]
        request["tool"] = {"type": "string", "enum": sorted(evidence_tools)}
        request["operation"] = {"type": "string", "enum": sorted({op for ops in evidence_tools.values() for op in ops})}
    return schema


def _strip(node: Any, keep: frozenset[str] = frozenset(), limits: SchemaLimits | None = None) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _UNSENT_KEYWORDS and not isinstance(value, dict) and key not in keep:
                continue
            if limits is not None and key == "maxLength":
                out[key] = min(int(value), limits.max_chars)
            elif limits is not None and key == "maxItems":
                out[key] = min(int(value), limits.max_items)
            else:
                out[key] = _strip(value, keep, limits)
        return out
    if isinstance(node, list):
        return [_strip(v, keep, limits) for v in node]
    return node


@dataclass(frozen=True)
class AnswerProblem:
    """Why a reply is not a valid answer; ``kind`` is one of empty, too_large, truncated, no_json, schema."""

    kind: str
    reason: str


_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_ERRORS = 6
#: The longest reply worth parsing. A valid answer is at most ~130 k characters (every field at its
#: limit); anything longer is a runaway model or a broken server, refused before any JSON work.
MAX_REPLY_CHARS = 256 * 1024


def parse_answer(content: str | None, finish_reason: str | None = None) -> LlmAnswer | AnswerProblem:
    """Validate a raw reply; prose around the JSON and ```json fences are accepted, nothing else is fixed."""
    if content is None or not content.strip():
        return AnswerProblem("empty", "the reply was empty (no choices or no content)")
    if len(content) > MAX_REPLY_CHARS:
        return AnswerProblem("too_large", f"the reply is {len(content)} characters, over the {MAX_REPLY_CHARS} "
                                          "a complete answer can need; reply with the JSON object only")
    found = extract_json(content)
    if isinstance(found, AnswerProblem):
        if finish_reason == "length":
            return AnswerProblem("truncated", "the reply was cut off at the token limit (finish_reason=length)")
        return found
    try:
        return LlmAnswer.model_validate(found)
    except ValidationError as exc:
        return AnswerProblem("schema", "the JSON does not match the schema: " + summarize_errors(exc))


def extract_json(text: str) -> dict[str, Any] | AnswerProblem:
    """The first JSON object in ``text``: a fenced block first, else the first ``{`` that decodes."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    truncated = False
    for candidate in candidates:
        end = len(candidate.rstrip())
        start = candidate.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except RecursionError:
                return AnswerProblem("no_json", "the JSON is nested too deeply to be an answer")
            except json.JSONDecodeError as exc:
                if exc.pos >= end or exc.msg.startswith("Unterminated"):
                    # The text ended inside this object: every later "{" is inside it too, and an
                    # inner object is not the answer.
                    truncated = True
                    break
            else:
                if isinstance(value, dict):
                    return value
            start = candidate.find("{", start + 1)
    if truncated:
        return AnswerProblem("truncated", "the JSON object is incomplete (truncated)")
    return AnswerProblem("no_json", "the reply contains no JSON object")


def summarize_errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:_MAX_ERRORS]:
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - _MAX_ERRORS
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)
