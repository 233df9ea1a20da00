"""The .avsc files and the pydantic records in schemas/records.py cannot drift apart."""

from __future__ import annotations

import json
import types
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic.fields import FieldInfo

from schemas.records import ALL_RECORDS, RcaResult, Record
from schemas.registry import SCHEMA_DIR, default_catalog


def _nested(record_type: type[Record], seen: dict[str, type[Record]]) -> None:
    seen[record_type.avro_name] = record_type
    for info in record_type.model_fields.values():
        for arg in _leaves(info.annotation):
            if isinstance(arg, type) and issubclass(arg, Record) and arg.avro_name not in seen:
                _nested(arg, seen)


def _leaves(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    if not args:
        return [annotation]
    return [leaf for arg in args for leaf in _leaves(arg)]


def _all_record_types() -> list[type[Record]]:
    seen: dict[str, type[Record]] = {}
    for record_type in ALL_RECORDS:
        _nested(record_type, seen)
    return sorted(seen.values(), key=lambda r: r.avro_name)


RECORD_TYPES = _all_record_types()


def _resolve(avro_type: Any, named: dict[str, Any]) -> Any:
    return named[avro_type] if isinstance(avro_type, str) and avro_type in named else avro_type


def _family(avro_type: Any, named: dict[str, Any]) -> Any:
    """A comparable description of an Avro type: primitives by name, containers recursively."""
    avro_type = _resolve(avro_type, named)
    if isinstance(avro_type, list):
        return ("union", *(_family(t, named) for t in avro_type))
    if isinstance(avro_type, str):
        return "int|long" if avro_type in ("int", "long") else avro_type
    kind = avro_type["type"]
    if kind == "long" and avro_type.get("logicalType") == "timestamp-millis":
        return "timestamp-millis"
    if kind in ("int", "long"):
        return "int|long"
    if kind == "enum":
        return ("enum", avro_type["name"], tuple(avro_type["symbols"]))
    if kind == "map":
        return ("map", _family(avro_type["values"], named))
    if kind == "array":
        return ("array", _family(avro_type["items"], named))
    if kind == "record":
        return ("record", avro_type["name"])
    return kind


def _python_family(annotation: Any) -> Any:
    """The Avro type family a pydantic field annotation must map to."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        assert type(None) in args and len(args) == 2, f"only T | None unions are allowed, got {annotation}"
        inner = next(a for a in args if a is not type(None))
        return ("union", "null", _python_family(inner))
    if origin is dict:
        key, value = get_args(annotation)
        assert key is str
        return ("map", _python_family(value))
    if origin is list:
        return ("array", _python_family(get_args(annotation)[0]))
    if annotation is str:
        return "string"
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "int|long"
    if annotation is float:
        return "double"
    if annotation is bytes:
        return "bytes"
    if annotation is datetime:
        return "timestamp-millis"
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return ("enum", f"rcaflow.{annotation.__name__}", tuple(m.value for m in annotation))
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return ("record", annotation.avro_name)
    raise AssertionError(f"no Avro mapping for {annotation!r}")


def _python_default(info: FieldInfo) -> Any:
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if isinstance(value, Record):
        return value.to_avro()
    return value


def _schema_of(record_type: type[Record]) -> tuple[dict[str, Any], dict[str, Any]]:
    parsed = default_catalog().current(record_type).parsed
    return parsed, parsed["__named_schemas"]


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda r: r.__name__)
def test_avsc_fields_match_record_fields(record_type: type[Record]) -> None:
    parsed, named = _schema_of(record_type)
    avro_fields = {f["name"]: f for f in parsed["fields"]}
    assert list(avro_fields) == list(record_type.model_fields), "same fields, same order"
    for name, info in record_type.model_fields.items():
        assert _family(avro_fields[name]["type"], named) == _python_family(info.annotation), name


@pytest.mark.parametrize("record_type", RECORD_TYPES, ids=lambda r: r.__name__)
def test_avsc_defaults_match_record_defaults(record_type: type[Record]) -> None:
    parsed, _ = _schema_of(record_type)
    avro_fields = {f["name"]: f for f in parsed["fields"]}
    for name, info in record_type.model_fields.items():
        if info.is_required():
            continue  # the schema may still give a default, for evolution
        assert "default" in avro_fields[name], f"{name} has a default in Python but not in Avro"
        assert avro_fields[name]["default"] == _python_default(info), name


@pytest.mark.parametrize("record_type", ALL_RECORDS, ids=lambda r: r.__name__)
def test_every_top_level_record_carries_tenant(record_type: type[Record]) -> None:
    parsed, named = _schema_of(record_type)
    tenant = next(f for f in parsed["fields"] if f["name"] == "tenant")
    assert _family(tenant["type"], named) == "string"


def _walk_named(avro_type: Any) -> list[dict[str, Any]]:
    if isinstance(avro_type, list):
        return [n for t in avro_type for n in _walk_named(t)]
    if not isinstance(avro_type, dict):
        return []
    found = [avro_type] if avro_type.get("type") in ("record", "enum") else []
    for key in ("fields",):
        for field in avro_type.get(key, []):
            found += _walk_named(field["type"])
    for key in ("items", "values"):
        if key in avro_type:
            found += _walk_named(avro_type[key])
    return found


def test_schema_files_follow_the_house_rules() -> None:
    files = sorted(SCHEMA_DIR.glob("*.avsc"))
    assert files
    for path in files:
        raw = json.loads(path.read_text(encoding="utf-8"))
        assert raw["namespace"] == "rcaflow", path.name
        assert path.name == f"rcaflow.{raw['name']}.avsc"
        assert raw.get("doc"), f"{path.name} needs a doc"
        if raw["type"] == "enum":
            assert raw.get("default") in raw["symbols"], f"{path.name}: enums need a default symbol"
        for field in raw.get("fields", []):
            if isinstance(field["type"], list):
                assert field["type"][0] == "null" and field.get("default", "missing") is None, (
                    f"{path.name}.{field['name']}: optional fields are ['null', T] with default null"
                )


def test_every_record_class_has_a_schema_file() -> None:
    names = {p.name for p in Path(SCHEMA_DIR).glob("*.avsc")}
    for record_type in RECORD_TYPES:
        assert f"{record_type.avro_name}.avsc" in names


def test_enum_defaults_are_fail_safe_where_safety_depends_on_them() -> None:
    """An unknown future symbol must never read as the permissive choice."""
    parsed, named = _schema_of(RcaResult)  # holds Risk and Approval
    enums = {n["name"]: n for n in _walk_named(parsed)} | {
        k: v for k, v in named.items() if isinstance(v, dict) and v.get("type") == "enum"
    }
    assert enums["rcaflow.Risk"]["default"] == "high"
    assert enums["rcaflow.Approval"]["default"] == "required"
    decision = default_catalog().current_named("rcaflow.ApprovalDecision").parsed
    assert {n["name"]: n for n in _walk_named(decision)}["rcaflow.Decision"]["default"] == "reject"
