"""The effective configuration as YAML, secrets masked, each value with where it came from (``rcaflow config check``).

Masking is by type and by name: every ``SecretStr``, every field whose name says credential (key, token,
password, secret) and the credential properties of ``kafka.client`` print as ``***``, so the output can be
pasted into a ticket.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from streams.settings import Settings
from streams.settings_fields import ENV_NESTING, ENV_PREFIX, env_aliases, is_secret_name
from streams.settings_unknown import NOT_SETTINGS, NOT_SETTINGS_PREFIXES

MASK = "***"


def masked(value: Any, name: str = "") -> Any:
    """``value`` as plain data with every secret replaced by ``***`` (unset secrets stay null/empty)."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        return {field: masked(getattr(value, field), field) for field in type(value).model_fields}
    if isinstance(value, Mapping):
        # a map's keys are names (tenants, librdkafka properties): a credential-looking key masks its value
        return {str(k): (MASK if is_secret_name(str(k)) and v not in (None, "") else masked(v, name))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(item, name) for item in value]
    if name and is_secret_name(name) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):
        return value.value  # an enum
    return value


def origins(config_file: Path | None, secrets_dir: Path | None,
            environ: Mapping[str, str] | None = None) -> dict[tuple[str, ...], str]:
    """Dotted path (lowercase parts) -> where it was set: ``env NAME``, ``file``, ``secrets-dir``.

    Precedence as in :class:`~streams.settings.Settings`: environment, then file, then secrets dir; a path set
    by a source covers everything under it.
    """
    environ = os.environ if environ is None else environ
    found: dict[tuple[str, ...], str] = {}
    if secrets_dir is not None:
        for path in sorted(secrets_dir.rglob("*")):
            relative = path.relative_to(secrets_dir)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                found[tuple(p.lower() for part in relative.parts for p in part.split(ENV_NESTING))] = "secrets-dir"
    if config_file is not None:
        data = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        for leaf in _leaf_paths(data, ()):
            found[leaf] = "file"
    aliases = {alias: name for name, field in Settings.model_fields.items() for alias in env_aliases(field)}
    for raw, _value in sorted(environ.items()):
        name = raw.upper()
        if name in aliases:
            found[(aliases[name],)] = f"env {name}"
        elif name.startswith(ENV_PREFIX) and name not in NOT_SETTINGS and not name.startswith(NOT_SETTINGS_PREFIXES):
            found[tuple(p.lower() for p in name[len(ENV_PREFIX):].split(ENV_NESTING))] = f"env {name}"
    return found


def _leaf_paths(data: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    if isinstance(data, Mapping) and data:
        return [p for k, v in data.items() for p in _leaf_paths(v, (*path, str(k).lower()))]
    return [path] if path else []


def origin_of(path: tuple[str, ...], found: Mapping[tuple[str, ...], str]) -> str | None:
    """The source of ``path`` or of the nearest section above it; None: the default."""
    for end in range(len(path), 0, -1):
        where = found.get(tuple(p.lower() for p in path[:end]))
        if where is not None:
            return where
    return None


def render(settings: Settings, found: Mapping[tuple[str, ...], str]) -> str:
    """YAML of the effective settings, masked, with ``# env RCAFLOW_...`` / ``# file`` / ``# secrets-dir``."""
    lines: list[str] = []
    _render(masked(settings), (), 0, found, lines)
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _render(data: Mapping[str, Any], path: tuple[str, ...], indent: int, found: Mapping[tuple[str, ...], str],
            lines: list[str]) -> None:
    pad = "  " * indent
    for key, value in data.items():
        here = (*path, key)
        where = origin_of(here, found)
        note = f"  # {where}" if where else ""
        if isinstance(value, Mapping) and value:
            lines.append(f"{pad}{_scalar(key)}:{note if where and len(here) == 1 else ''}")
            _render(value, here, indent + 1, found, lines)
        else:
            lines.append(f"{pad}{_scalar(key)}: {_scalar(value)}{note}")
