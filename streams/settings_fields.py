"""Every setting of the Settings model as a flat row: dotted path, env var, type, default, description, secret.

One walk of the model serves the generated reference (docs/configuration.md and the example files), the
unknown-key check and ``rcaflow config check``, so the three can never disagree about what a setting is.
"""

from __future__ import annotations

import enum
import inspect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo

ENV_PREFIX = "RCAFLOW_"
ENV_NESTING = "__"
#: Stands for any name in a map of sections (``tenants.<name>.token``).
ANY_NAME = "<name>"
#: Stands for every item of a list of sections (``msgraph.mailboxes[].user``).
ANY_ITEM = "[]"
#: Field-name words that make a value a credential, wherever it sits (a ``*_file`` or ``*_dir`` is a path).
_SECRET_WORDS = frozenset({"key", "keys", "token", "password", "secret", "secrets"})
_PATH_SUFFIXES = ("_file", "_dir", "_url_file")


@dataclass(frozen=True)
class SettingRow:
    """One leaf setting as the reference shows it."""

    path: str
    #: How the environment sets it (several for the top-level aliases); empty for list items (set the list).
    env: tuple[str, ...]
    type: str
    default: str
    description: str
    secret: bool
    required: bool
    #: The default as plain data (enums as values, paths with ``~``), for the example files.
    value: Any = None

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0].split("[", 1)[0] if "." in self.path else ""


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without ``None``, whether ``None`` was allowed)."""
    annotation = strip_annotated(annotation)
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) < len(get_args(annotation)):
            return (strip_annotated(args[0]) if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return annotation, False


def strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The section model ``annotation`` stands for (``X``, ``X | None``), else None."""
    inner, _ = unwrap_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def models_in_union(annotation: Any) -> list[type[BaseModel]]:
    """The section models among the members of a union (``str | ReloadTarget`` -> [ReloadTarget])."""
    inner, _ = unwrap_optional(annotation)
    members = get_args(inner) if get_origin(inner) in (Union, UnionType) else (inner,)
    return [m for m in (strip_annotated(a) for a in members) if isinstance(m, type) and issubclass(m, BaseModel)]


def container_item(annotation: Any) -> tuple[str, Any] | None:
    """("map", value type) for ``dict[str, X]``, ("list", item type) for ``list[X]``/``tuple[X, ...]``."""
    inner, _ = unwrap_optional(annotation)
    origin = get_origin(inner)
    if origin is dict:
        return "map", get_args(inner)[1]
    if origin in (list, tuple, set, frozenset):
        args = [a for a in get_args(inner) if a is not Ellipsis]
        return "list", args[0] if args else Any
    return None


def field_names(model: type[BaseModel]) -> dict[str, str]:
    """Every name a key may take in ``model`` (field names and validation aliases) -> the field name."""
    names: dict[str, str] = {}
    for name, field in model.model_fields.items():
        names[name] = name
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({choice: name for choice in alias.choices if isinstance(choice, str)})
        elif isinstance(alias, str):
            names[alias] = name
    return names


def env_aliases(field: FieldInfo) -> tuple[str, ...]:
    """The environment names of a top-level field with aliases (pydantic-settings drops the prefix then)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(choice.upper() for choice in alias.choices if isinstance(choice, str))
    if isinstance(alias, str):
        return (alias.upper(),)
    return ()


def is_secret_name(name: str) -> bool:
    """A field whose name says it holds a credential (``api_key``, ``client_secret``, ``key_password``)."""
    lowered = name.lower()
    if lowered.endswith(_PATH_SUFFIXES):
        return False
    return bool(_SECRET_WORDS & set(re.split(r"[_.\-]", lowered)))


def is_secret(name: str, annotation: Any) -> bool:
    return is_secret_name(name) or _mentions(annotation, SecretStr)


def _mentions(annotation: Any, wanted: type) -> bool:
    annotation = strip_annotated(annotation)
    if annotation is wanted:
        return True
    return any(_mentions(arg, wanted) for arg in get_args(annotation) if arg is not Ellipsis)


@cache
def attribute_docs(model: type[BaseModel]) -> dict[str, str]:
    """The ``#:`` comments written above each field in the class body (Sphinx's attribute-doc convention)."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines[1:]:
            comment = re.match(r"^\s+#:\s?(.*)$", line)
            if comment:
                pending.append(comment.group(1).strip())
                continue
            field = re.match(r"^    (\w+)\s*:", line)
            if field and pending and field.group(1) in model.model_fields:
                docs[field.group(1)] = " ".join(pending)
            if line.strip():
                pending = []
    return docs


def description_of(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    text = field.description or attribute_docs(model).get(name, "")
    section = model_of(field.annotation)
    if not text and section is not None and section.__doc__:
        text = inspect.cleandoc(section.__doc__).split("\n\n", 1)[0]
    return " ".join(text.split())


def type_name(annotation: Any, field: FieldInfo | None = None) -> str:
    """``int (1 to 64)``, ``list of string``, ``one of auto, kafka, tansu``: for people, not for mypy."""
    base = _type_words(annotation)
    limits = _limits([*(field.metadata if field is not None else []), *_annotated_metadata(annotation)])
    return f"{base} ({limits})" if limits else base


def _annotated_metadata(annotation: Any) -> list[Any]:
    inner, _ = unwrap_optional(annotation)
    found: list[Any] = []
    for candidate in (annotation, inner):
        if get_origin(candidate) is Annotated:
            found.extend(get_args(candidate)[1:])
    return found


def _type_words(annotation: Any) -> str:
    inner, _optional = unwrap_optional(annotation)
    origin = get_origin(inner)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(inner))
    if origin in (Union, UnionType):
        return " or ".join(_type_words(a) for a in get_args(inner))
    item = container_item(inner)
    if item is not None:
        kind, of = item
        return f"list of {_type_words(of)}" if kind == "list" else f"map of name to {_type_words(of)}"
    if isinstance(inner, type):
        if issubclass(inner, enum.Enum):
            return "one of " + ", ".join(str(m.value) for m in inner)
        if issubclass(inner, BaseModel):
            return "section"
        simple = {bool: "bool", int: "int", float: "float", str: "string", SecretStr: "secret string",
                  Path: "path"}
        if inner in simple:
            return simple[inner]
        return inner.__name__
    return str(inner)


def _limits(metadata: list[Any]) -> str:
    words = []
    for item in metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "min length"),
                           ("max_length", "max length")):
            value = getattr(item, attr, None)
            if value is not None and isinstance(item, (annotated_types.BaseMetadata, type(item))):
                words.append(f"{sign} {value}")
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            words.append(f"matches {pattern}")
    return ", ".join(dict.fromkeys(words))


def plain_default(item: Any) -> Any:
    """A default as plain data, with the home directory as ``~`` (the reference is machine-free)."""
    if isinstance(item, SecretStr):
        return "***"
    if isinstance(item, enum.Enum):
        return item.value
    if isinstance(item, Path):
        home = str(Path.home())
        text = str(item)
        return "~" + text[len(home):] if text == home or text.startswith(home + "/") else text
    if isinstance(item, BaseModel):
        return {k: plain_default(v) for k, v in item.model_dump(mode="python").items()}
    if isinstance(item, dict):
        return {str(k): plain_default(v) for k, v in item.items()}
    if isinstance(item, (list, tuple, set, frozenset)):
        return [plain_default(v) for v in item]
    return item


def render_default(value: Any) -> str:
    """A default as YAML would spell it (one line), for the reference table."""
    import json

    value = plain_default(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if value == "" or value.strip() != value else value
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def iter_settings(model: type[BaseModel], path: tuple[str, ...] = (), env: str | None = ENV_PREFIX,
                  top: bool = True, defaults: BaseModel | None = None) -> list[SettingRow]:
    """Every leaf under ``model``, depth first in declaration order; sections are walked, not listed.

    ``defaults``: the section's own default instance, whose values win over the class's (a section's
    ``default_factory`` may build it with other values than its fields' defaults).
    """
    rows: list[SettingRow] = []
    for name, field in model.model_fields.items():
        default_value = (getattr(defaults, name) if defaults is not None
                         else None if field.is_required() else field.get_default(call_default_factory=True))
        here = (*path, name)
        aliases = env_aliases(field) if top else ()
        env_name = aliases or ((f"{env}{name.upper()}",) if env is not None else ())
        nested_env = f"{env}{name.upper()}{ENV_NESTING}" if env is not None and not aliases else None
        section = model_of(field.annotation)
        item = container_item(field.annotation)
        if section is not None:
            rows += iter_settings(section, here, nested_env, top=False,
                                  defaults=default_value if isinstance(default_value, section) else None)
            continue
        if item is not None and model_of(item[1]) is not None and not models_in_union(item[1])[1:]:
            inner = model_of(item[1])
            assert inner is not None
            if item[0] == "map":
                sub_env = f"{nested_env}{ANY_NAME.upper()}{ENV_NESTING}" if nested_env else None
                rows += iter_settings(inner, (*here, ANY_NAME), sub_env, top=False)
            else:
                rows += iter_settings(inner, (*here[:-1], here[-1] + ANY_ITEM), None, top=False)
            continue
        required = field.is_required()
        default = "required" if required and defaults is None else render_default(default_value)
        rows.append(SettingRow(
            path=".".join(here), env=env_name, type=type_name(field.annotation, field), default=default,
            description=description_of(model, name), secret=is_secret(name, field.annotation), required=required,
            value=None if required and defaults is None else plain_default(default_value)))
    return rows
