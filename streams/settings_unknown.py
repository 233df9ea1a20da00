"""Keys that name no setting, in the YAML file or among the ``RCAFLOW_*`` variables, with the nearest valid name.

pydantic ignores an unknown key (or, in a section that forbids extras, refuses it without a hint), so a typo
such as ``evidance:`` would silently leave the evidence backends off. Each problem becomes one line:
``evidance: unknown setting; did you mean evidence?``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from streams.settings_fields import (
    ANY_NAME,
    ENV_NESTING,
    ENV_PREFIX,
    container_item,
    env_aliases,
    field_names,
    iter_settings,
    model_of,
    models_in_union,
)

#: ``RCAFLOW_*`` variables that are not settings: the CLI's own options, docker-compose.yml's interpolation
#: variables (``.env``), and the test and benchmark tooling's knobs. Anything else under the prefix must name a
#: setting.
NOT_SETTINGS = frozenset({
    "RCAFLOW_CONFIG", "RCAFLOW_SECRETS_DIR",
    "RCAFLOW_API_TOKEN", "RCAFLOW_DECISION_KEY", "RCAFLOW_APPROVAL_KEY", "RCAFLOW_KAFKA_PASSWORD",
    "RCAFLOW_CACHE", "RCAFLOW_CACHE_DIR", "RCAFLOW_K8S_BIN", "RCAFLOW_CYRUS_IMAPD_DIR", "RCAFLOW_ES_VERSION",
    "RCAFLOW_ES_JAVA_HOME", "RCAFLOW_LIVE_MODEL_GATE", "RCAFLOW_LIVE_EVIDENCE_ROUND",
})
NOT_SETTINGS_PREFIXES = ("RCAFLOW_TEST_", "RCAFLOW_FAULTS_", "RCAFLOW_BENCH_")


def unknown_in_data(model: type[BaseModel], data: Any, path: tuple[str, ...] = ()) -> list[str]:
    """One line per key of ``data`` (a YAML or JSON mapping) that names no field, at every nesting level."""
    if not isinstance(data, Mapping):
        return []
    if model.model_config.get("extra") == "allow":
        return []
    names = field_names(model)
    problems: list[str] = []
    for key, value in data.items():
        key_text = str(key)
        here = (*path, key_text)
        if key_text not in names:
            problems.append(f"{'.'.join(here)}: unknown setting; {_hint(model, key_text, path)}")
            continue
        problems += _unknown_in_value(model.model_fields[names[key_text]].annotation, value, here)
    return problems


def _unknown_in_value(annotation: Any, value: Any, path: tuple[str, ...]) -> list[str]:
    section = model_of(annotation)
    if section is not None:
        return unknown_in_data(section, value, path)
    item = container_item(annotation)
    if item is not None:
        kind, of = item
        if kind == "map" and isinstance(value, Mapping):
            return [p for k, v in value.items() for p in _unknown_in_value(of, v, (*path, str(k)))]
        if kind == "list" and isinstance(value, (list, tuple)):
            return [p for i, v in enumerate(value)
                    for p in _unknown_in_value(of, v, (*path[:-1], f"{path[-1] if path else ''}[{i}]"))]
        return []
    models = models_in_union(annotation)
    if len(models) == 1 and isinstance(value, Mapping):
        return unknown_in_data(models[0], value, path)
    return []


def _hint(model: type[BaseModel], key: str, path: tuple[str, ...]) -> str:
    """``did you mean X?``: a sibling first, else the same name in another section, else what the section has."""
    siblings = list(field_names(model))
    close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6)
    if close:
        return f"did you mean {'.'.join((*path, close[0]))}?"
    if not path:
        elsewhere = [row.path for row in iter_settings(model) if row.path.rsplit(".", 1)[-1] == key.lower()]
        if elsewhere:
            return f"did you mean {' or '.join(elsewhere[:3])}?"
    shown = sorted(model.model_fields)
    more = ", ..." if len(shown) > 12 else ""
    return f"{'.'.join(path) or 'the top level'} has {', '.join(shown[:12])}{more}"


def unknown_in_environment(model: type[BaseModel], environ: Mapping[str, str]) -> list[str]:
    """One line per ``RCAFLOW_*`` variable that names no setting (names compare case-insensitively, as
    pydantic-settings reads them); JSON values of sections are checked inside too."""
    problems: list[str] = []
    for raw_name, value in sorted(environ.items()):
        name = raw_name.upper()
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS or name.startswith(NOT_SETTINGS_PREFIXES):
            continue
        problem = _env_problem(model, name, value)
        if problem:
            problems.append(problem)
    return problems


def _top_level_env(model: type[BaseModel]) -> dict[str, str]:
    """Environment head (``KAFKA``, ``LLM_API_KEY`` ...) -> field name, aliases included."""
    heads: dict[str, str] = {}
    for name, field in model.model_fields.items():
        aliases = env_aliases(field)
        for alias in aliases:
            if alias.startswith(ENV_PREFIX):
                heads[alias[len(ENV_PREFIX):]] = name
        if not aliases:
            heads[name.upper()] = name
    return heads


def _env_problem(model: type[BaseModel], name: str, value: str) -> str | None:
    parts = name[len(ENV_PREFIX):].split(ENV_NESTING)
    heads = _top_level_env(model)
    if parts[0] not in heads:
        return f"{name}: unknown setting; {_env_hint(model, name, parts, 0, list(heads))}"
    annotation: Any = model.model_fields[heads[parts[0]]].annotation
    walked = [parts[0]]
    for index, part in enumerate(parts[1:], start=1):
        section = model_of(annotation) or next(iter(models_in_union(annotation)[:1]), None)
        item = container_item(annotation)
        if section is not None and (item is None):
            by_upper = {field.upper(): field for field in section.model_fields}
            if part not in by_upper:
                return f"{name}: unknown setting; {_env_hint(section, name, parts, index, list(by_upper))}"
            annotation = section.model_fields[by_upper[part]].annotation
        elif item is not None and item[0] == "map":
            annotation = item[1]  # any name: a tenant, a mailbox, a librdkafka property
        else:
            where = ENV_PREFIX + ENV_NESTING.join(walked)
            return f"{name}: unknown setting; {where} is a single value, not a section"
        walked.append(part)
    if value.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(value)
        except ValueError:
            return None  # pydantic-settings says so itself, naming the variable
        inner = [p for p in _unknown_in_value(annotation, data, ()) if p]
        if inner:
            return f"{name}: {inner[0]}" + (f" (and {len(inner) - 1} more)" if len(inner) > 1 else "")
    return None


def _env_hint(section: type[BaseModel], name: str, parts: list[str], index: int, candidates: list[str]) -> str:
    close = difflib.get_close_matches(parts[index], candidates, n=1, cutoff=0.6)
    if close:
        fixed = [*parts[:index], close[0], *parts[index + 1:]]
        return f"did you mean {ENV_PREFIX}{ENV_NESTING.join(fixed)}?"
    if index == 0:
        every = [env for row in iter_settings(section) for env in row.env if ANY_NAME.upper() not in env]
        close = difflib.get_close_matches(name, every, n=1, cutoff=0.75)
        if close:
            return f"did you mean {close[0]}?"
    return "it names no setting (see docs/configuration.md)"
