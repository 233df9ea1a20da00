"""The defaults the docs state are the ones the code uses.

Scans docs/*.md (the generated docs/configuration.md aside) for two shapes: a table with a ``default``
column whose first column names settings, and prose like ``worker.stuck_after_s`` (default 300 s). A name is
resolved to a setting by its dotted path, its env var, its model class (``NotifySettings.keep_hours``) or the
section the table is about (``RCAFLOW_KB__…`` in the header, ``## Configuration (`ImapConfig`)`` above it);
what cannot be resolved or is prose rather than a value ("system CAs") is not compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from executors.llm.provider import LlmConfig
from streams.settings import Settings
from streams.settings_fields import ANY_NAME, container_item, iter_settings, model_of, plain_default

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "configuration.md")
#: Models documented by class name outside Settings; a field that Settings also has is compared with Settings'
#: default (what a deployment gets), the rest with the class's own.
EXTRA_MODELS: dict[str, tuple[str, type[BaseModel]]] = {"LlmConfig": ("llm", LlmConfig)}


@dataclass(frozen=True)
class Claim:
    where: str
    name: str
    said: str


def _models() -> dict[str, tuple[str, type[BaseModel]]]:
    """Model class name -> (dotted prefix, class) for every section of Settings."""
    found: dict[str, tuple[str, type[BaseModel]]] = {"Settings": ("", Settings)}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            section = model_of(field.annotation)
            item = container_item(field.annotation)
            path = f"{prefix}{name}"
            if section is not None:
                found.setdefault(section.__name__, (path, section))
                walk(section, path + ".")
            elif item is not None and model_of(item[1]) is not None:
                inner = model_of(item[1])
                assert inner is not None
                sub = f"{path}.{ANY_NAME}" if item[0] == "map" else path
                found.setdefault(inner.__name__, (sub, inner))
                walk(inner, sub + ".")

    walk(Settings, "")
    return {**found, **EXTRA_MODELS}


MODELS = _models()


def default_of(path: str) -> tuple[bool, Any]:
    """(found, default) of a dotted path such as ``kb.similar_k`` or ``mailboxes.<name>.folder``."""
    model: type[BaseModel] = Settings
    value: Any = None
    parts = path.split(".")
    for index, part in enumerate(parts):
        if part == ANY_NAME:
            continue
        if part not in model.model_fields:
            return False, None
        field = model.model_fields[part]
        if value is not None and isinstance(value, BaseModel):
            value = getattr(value, part)
        else:
            value = None if field.is_required() else field.get_default(call_default_factory=True)
        if index == len(parts) - 1:
            return True, value
        inner = model_of(field.annotation)
        item = container_item(field.annotation)
        if inner is None and item is not None:
            inner = model_of(item[1])
            value = None
        if inner is None:
            return False, None
        model = inner
        if not isinstance(value, BaseModel):
            value = None
    return False, None


def resolve(name: str, section: str | None, hint_env: str | None = None) -> tuple[bool, Any, str]:
    """(found, default, path) for a name as the docs write it."""
    candidates = []
    if hint_env:
        candidates.append(hint_env.removeprefix("RCAFLOW_").lower().replace("__", "."))
    name = name.strip().strip("`")
    if name.startswith("RCAFLOW_"):
        candidates.append(name.removeprefix("RCAFLOW_").lower().replace("__", "."))
    elif "." in name and name.split(".", 1)[0] in MODELS:
        cls, field = name.split(".", 1)
        prefix, _model = MODELS[cls]
        candidates.append(f"{prefix}.{field}" if prefix else field)
    elif section is not None:
        candidates.append(f"{section}.{name.lower().replace('__', '.')}" if section else name)
    candidates.append(name)
    for candidate in candidates:
        found, value = default_of(candidate)
        if found:
            return True, value, candidate
    unique = [row.path for row in iter_settings(Settings) if row.path.rsplit(".", 1)[-1] == name]
    if len(unique) == 1:  # a bare field name that only one setting has
        return (*default_of(unique[0]), unique[0])
    if section == "llm" and name in LlmConfig.model_fields:  # the client's own knobs (temperature, retries ...)
        return True, LlmConfig.model_fields[name].get_default(call_default_factory=True), f"LlmConfig.{name}"
    return False, None, name


_NUMBER = re.compile(r"^(-?[\d][\d  ]*(?:\.\d+)?)\s*(ms|s|min|h|d|days?|KiB|MiB|GiB)?$")
_UNITS_S = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400, "day": 86400, "days": 86400}
_BYTES = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def _field_unit_s(path: str) -> float | None:
    """Seconds per unit of a duration field, from its name; None when the name says no unit."""
    for suffix, seconds in (("_ms", 0.001), ("_s", 1), ("_seconds", 1), ("_minutes", 60), ("_hours", 3600)):
        if path.endswith(suffix):
            return seconds
    return None


def agrees(path: str, default: Any, said: str) -> bool | None:
    """Whether the doc's words state ``default``; None when they are prose, not a value."""
    text = said.strip()
    first = re.match(r"^`([^`]*)`", text)
    literal = first.group(1) if first else re.split(r"\s+\(|;|,(?=\s)", text)[0].strip()
    default = plain_default(default)
    if default == "***":
        return None  # a secret's default is not documented as a value
    if isinstance(default, str) and first:
        return literal == default
    if literal.lower() in ("—", "-", "–", ""):
        return None  # required or no value: nothing to compare
    if literal.lower() in ("none", "unset", "null", "off"):
        return default in (None, "", [], {}) or default is False
    if literal.lower() in ("true", "false"):
        return isinstance(default, bool) and default is (literal.lower() == "true")
    number = _NUMBER.match(literal)
    if number and isinstance(default, (int, float)) and not isinstance(default, bool):
        amount = float(number.group(1).replace(" ", "").replace("\u202f", "").replace(" ", ""))
        unit = number.group(2)
        if unit in _BYTES:
            return amount * _BYTES[unit] == default
        if unit:
            per = _field_unit_s(path)
            return None if per is None else amount * _UNITS_S[unit] / per == pytest.approx(float(default))
        return amount == pytest.approx(float(default))
    if isinstance(default, str) and literal and " " not in literal:
        return literal == default
    return None


def claims(path: Path) -> list[tuple[Claim, str | None, str | None]]:
    """(claim, section, env hint) for every default the page states."""
    found: list[tuple[Claim, str | None, str | None]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    section: str | None = None
    default_col: int | None = None
    for number, line in enumerate(lines, start=1):
        if line.startswith("#"):
            named = [word for word in re.findall(r"`(\w+)`", line) if word in MODELS]
            section = MODELS[named[0]][0] if named else None
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))] if line.startswith("|") else []
        if cells and any(c.lower() == "default" for c in cells):
            default_col = [c.lower() for c in cells].index("default")
            env_head = re.search(r"RCAFLOW_(\w+?)__", cells[0])
            if env_head:
                section = env_head.group(1).lower()
            continue
        if not cells:
            default_col = None
        if default_col is not None and len(cells) > default_col and not set(cells[0]) <= set("-: "):
            names = [n for n in re.split(r"\s*[,/]\s*", cells[0].replace("`", "")) if n]
            values = re.split(r"\s*(?:,| / )\s*(?![^(]*\))", cells[default_col])
            if len(names) == len(values):
                for name, value in zip(names, values, strict=True):
                    found.append((Claim(f"{path.name}:{number}", name, value), section, None))
        for match in re.finditer(r"`([\w.]+)`[^`(\n]{0,25}\(default ([^,;)]+)(?:[,;][^)]*?`(RCAFLOW_\w+)`)?", line):
            found.append((Claim(f"{path.name}:{number}", match.group(1), match.group(2)), None, match.group(3)))
    return found


def _compared() -> list[tuple[Claim, str, Any]]:
    rows = []
    for page in DOCS:
        for claim, section, env in claims(page):
            ok, default, where = resolve(claim.name, section, env)
            if ok:
                rows.append((claim, where, default))
    return rows


def test_documented_defaults_are_the_codes() -> None:
    wrong = []
    compared = 0
    for claim, where, default in _compared():
        verdict = agrees(where, default, claim.said)
        if verdict is None:
            continue
        compared += 1
        if not verdict:
            wrong.append(f"{claim.where}: {claim.name} documented as {claim.said!r}, but {where} defaults to "
                         f"{plain_default(default)!r}")
    assert not wrong, "docs state defaults the code does not use:\n" + "\n".join(wrong)
    assert compared >= 30, f"only {compared} documented defaults compared: the scanner lost its way"


def test_llm_md_is_scanned() -> None:
    """docs/llm.md first: its configuration table is compared row by row."""
    llm = [(c, w) for c, w, _ in _compared() if c.where.startswith("llm.md")]
    assert {w for _c, w in llm} >= {"llm.max_tokens", "llm.timeout_s", "llm.max_concurrency_per_tenant",
                                   "llm.rate_per_tenant_per_s", "LlmConfig.temperature"}


def test_a_wrong_default_in_a_table_is_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("## Configuration (`LlmConfig`)\n\n| field | default | meaning |\n|---|---|---|\n"
                    "| `max_concurrency_per_tenant` | 4 | |\n\n`worker.stuck_after_s` (default 300 s) and "
                    "`kb.similar_k` (default 7)\n")
    results = {c.name: agrees(resolve(c.name, s, e)[2], resolve(c.name, s, e)[1], c.said)
               for c, s, e in claims(page)}
    assert results == {"max_concurrency_per_tenant": False, "worker.stuck_after_s": True, "kb.similar_k": False}
