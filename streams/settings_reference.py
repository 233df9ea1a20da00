"""The settings reference and example files, generated from the Settings model (``make config-docs``).

docs/configuration.md, rcaflow.example.yaml and .env.example are written from
:func:`streams.settings_fields.iter_settings`, so a new field shows up in all three the moment it is added,
with its description (``#:`` comment or ``Field(description=...)``), type, default and env var; a unit test
fails when the checked-in files differ from what the model gives.

``python -m streams.settings_reference`` writes them; ``--check`` only compares.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from streams.settings_fields import ANY_ITEM, ANY_NAME, ENV_NESTING, ENV_PREFIX, SettingRow, iter_settings

ROOT = Path(__file__).resolve().parents[1]
_GENERATED = "Generated from streams/settings.py by `make config-docs`; do not edit by hand."
_TOP = "(top level)"


def settings_rows() -> list[SettingRow]:
    from streams.settings import Settings

    return iter_settings(Settings)


def _sections(rows: list[SettingRow]) -> dict[str, list[SettingRow]]:
    grouped: dict[str, list[SettingRow]] = {_TOP: []}
    for row in rows:
        grouped.setdefault(row.section or _TOP, []).append(row)
    return grouped


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def configuration_md(rows: list[SettingRow]) -> str:
    sections = _sections(rows)
    out = [
        "# Configuration reference",
        "",
        f"<!-- {_GENERATED} -->",
        "",
        "Every setting rcaflow reads, from the `Settings` model in `streams/settings.py`. Set a setting in any of",
        "these places; the first one that has it wins:",
        "",
        "1. the environment: `RCAFLOW_` and the dotted path in capitals with `__` for the dots",
        "   (`api.port` is `RCAFLOW_API__PORT`); a list or a map is JSON",
        "   (`RCAFLOW_TENANTS__ACME__NAMESPACES='[\"*\"]'`);",
        "2. the YAML file given with `--config FILE` (or `RCAFLOW_CONFIG`), nested like the dotted path;",
        "3. a file in the directory given with `--secrets-dir DIR` (or `RCAFLOW_SECRETS_DIR`), named like the",
        "   variable without the prefix (`approvals/link_secret` or `approvals__link_secret`);",
        "4. the default below.",
        "",
        "A key that names no setting is refused, in the file and among the `RCAFLOW_*` variables, with the",
        "nearest valid name, one line per problem and exit code 2:",
        "",
        "```",
        "rcaflow: rcaflow.yaml: evidance: unknown setting; did you mean evidence?",
        "rcaflow: RCAFLOW_SECURITY__DECISON_KEY: unknown setting; did you mean RCAFLOW_SECURITY__DECISION_KEY?",
        "```",
        "",
        "(`RCAFLOW_CONFIG`, `RCAFLOW_SECRETS_DIR`, docker-compose's `.env` variables and the test tooling's",
        "`RCAFLOW_TEST_*` / `RCAFLOW_FAULTS_*` are not settings and are left alone: `streams/settings_unknown.py`.)",
        "",
        "`rcaflow config check [--config FILE]` prints the effective configuration as YAML, every secret as",
        "`***`, each value with where it came from (`env RCAFLOW_...`, `file`, `secrets-dir`, or nothing for a",
        "default), and exits 2 when the configuration is invalid.",
        "",
        "Commented examples of every key: [`rcaflow.example.yaml`](../rcaflow.example.yaml) and",
        "[`.env.example`](../.env.example). `<name>` stands for any name you choose (a tenant, a mailbox);",
        "`[]` marks the fields of each item of a list. **secret**: masked by `rcaflow config check` and blanked",
        "in logs; give it through the environment or the secrets dir, not the YAML file.",
        "",
        "Sections: " + ", ".join(f"[`{name}`](#{_anchor(name)})" for name in sections if sections[name]),
        "",
    ]
    for name, section_rows in sections.items():
        if not section_rows:
            continue
        out += [f"## {name if name == _TOP else '`' + name + '`'}", "",
                "| key | environment variable | type | default | description |", "|---|---|---|---|---|"]
        for row in section_rows:
            env = " or ".join(f"`{e}`" for e in row.env) if row.env else "(part of the list's JSON)"
            secret = "**secret** " if row.secret else ""
            default = "*required*" if row.required else f"`{_cell(row.default)}`"
            out.append(f"| `{_cell(row.path)}` | {_cell(env)} | {_cell(row.type)} | {default} | "
                       f"{secret}{_cell(row.description)} |")
        out.append("")
    return "\n".join(out)


def _anchor(name: str) -> str:
    return "top-level" if name == _TOP else name.replace("_", "_")


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def example_yaml(rows: list[SettingRow]) -> str:
    """Every key with its default, commented out: uncomment what you change (the file as is sets nothing)."""
    tree: dict[str, Any] = {}
    for row in rows:
        node = tree
        parts = row.path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = row
    out = [f"# rcaflow settings. {_GENERATED}",
           "# Every key with its default, commented out: uncomment (remove one '# ') what you change.",
           "# The environment wins over this file (RCAFLOW_<SECTION>__<KEY>); secrets belong in the environment",
           "# or the secrets dir, not here. Reference: docs/configuration.md. Check with `rcaflow config check`.",
           ""]
    _emit(tree, 0, out)
    return "\n".join(out) + "\n"


def _emit(node: dict[str, Any], indent: int, out: list[str]) -> None:
    pad = "  " * indent
    for key, child in node.items():
        name = "example" if key == ANY_NAME else key.removesuffix(ANY_ITEM)
        if isinstance(child, SettingRow):
            for line in textwrap.wrap(child.description, 100 - len(pad)) if child.description else []:
                out.append(f"# {pad}# {line}")
            home = _in_home(child.value)
            value = "" if child.required or home else " " + _yaml_value(child.value)
            notes = [n for n, on in (("required", child.required), ("secret", child.secret), (home, bool(home))) if on]
            out.append(f"# {pad}{name}:{value}" + (f"  # {', '.join(notes)}" if notes else ""))
            continue
        if indent == 0:
            out.append("")
        if key == ANY_NAME:
            out.append(f"# {pad}{name}:  # any name")
        else:
            out.append(f"# {pad}{name}:")
        if key.endswith(ANY_ITEM):
            items: list[str] = []
            _emit(child, indent + 1, items)
            item_pad = "# " + "  " * (indent + 1)
            first = next((i for i, line in enumerate(items) if not line.startswith(item_pad + "#")), None)
            if first is not None:  # the first key of the item carries the dash, in the same column
                items[first] = "# " + pad + "- " + items[first][len(item_pad):]
            out += items
        else:
            _emit(child, indent + 1, out)


def env_example(rows: list[SettingRow]) -> str:
    """Every setting as its environment variable, commented out, with its default."""
    out = [f"# rcaflow settings as environment variables. {_GENERATED}",
           "# Uncomment what you change. A list or a map is JSON; <NAME> is any name (a tenant, a mailbox).",
           "# Reference: docs/configuration.md. Check with `rcaflow config check`.",
           "# docker compose reads .env as well, for its own variables (RCAFLOW_API_TOKEN, RCAFLOW_DECISION_KEY,",
           "# RCAFLOW_APPROVAL_KEY: see docker-compose.yml); rcaflow leaves those names alone.",
           ""]
    lists_done: set[str] = set()
    for section, section_rows in _sections(rows).items():
        if not section_rows:
            continue
        out.append(f"# --- {section} ---")
        for row in section_rows:
            if not row.env:
                head = row.path.split(ANY_ITEM, 1)[0]
                if head in lists_done:
                    continue
                lists_done.add(head)
                env = ENV_PREFIX + ENV_NESTING.join(part.upper() for part in head.split("."))
                out.append(f"# {head}: a JSON list of sections (see docs/configuration.md)")
                out.append(f"#{env}=[]")
                continue
            if row.description:
                out += [f"# {line}" for line in textwrap.wrap(row.description, 100)]
            home = _in_home(row.value)
            value = "" if row.required or row.value is None or home else _env_value(row.value)
            notes = [n for n, on in (("required", row.required), ("secret", row.secret), (home, bool(home))) if on]
            out.append(f"#{row.env[0]}={value}" + (f"  # {', '.join(notes)}" if notes else ""))
        out.append("")
    return "\n".join(out)


def _in_home(value: Any) -> str:
    """A note for a default under the home directory, which neither YAML nor a .env file would expand."""
    return f"default {value}, in the home directory of the user rcaflow runs as" \
        if isinstance(value, str) and value.startswith("~/") else ""


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "'" + json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "'"
    return str(value)


#: Each generated file and how it is made from the rows.
OUTPUTS: dict[str, Callable[[list[SettingRow]], str]] = {
    "docs/configuration.md": configuration_md,
    "rcaflow.example.yaml": example_yaml,
    ".env.example": env_example,
}


def stale(root: Path = ROOT) -> list[str]:
    """The generated files that differ from what the model gives now."""
    rows = settings_rows()
    return [name for name, make in OUTPUTS.items()
            if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != make(rows)]


def write(root: Path = ROOT) -> list[str]:
    rows = settings_rows()
    written = []
    for name, make in OUTPUTS.items():
        text = make(rows)
        path = root / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the settings reference and example files.")
    parser.add_argument("--check", action="store_true", help="only say which files are out of date (exit 1)")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for name in out_of_date:
            print(f"{name} is out of date: run `make config-docs`", file=sys.stderr)
        return 1 if out_of_date else 0
    for name in write():
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
