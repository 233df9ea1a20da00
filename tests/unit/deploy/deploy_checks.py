"""What the deployment files may name: environment variables that land on a setting, commands and options that
exist. Shared by the compose and Kubernetes manifest tests, so a renamed setting or option fails them both."""

from __future__ import annotations

from typing import Any, get_args, get_origin

import click
from pydantic import AliasChoices, BaseModel

from streams.cli import cli
from streams.settings import Settings

PREFIX = "RCAFLOW_"
NESTING = "__"


def _aliases() -> set[str]:
    """Env names a top-level field takes besides ``RCAFLOW_<field>`` (KAFKA_BOOTSTRAP_SERVERS, QWEN_API_KEY, ...)."""
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
    return names


def _unwrap(annotation: Any) -> Any:
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is not None and get_origin(annotation) is not dict and len(args) == 1:
        return args[0]
    return annotation


def env_problem(name: str) -> str | None:
    """Why ``name`` sets no rcaflow setting (None when it does). pydantic-settings reads env names case-blind."""
    if name.upper() in _aliases():
        return None
    if not name.upper().startswith(PREFIX):
        return f"{name}: neither RCAFLOW_<setting> nor one of {sorted(_aliases())}"
    annotation: Any = Settings
    walked: list[str] = []
    for part in name[len(PREFIX):].lower().split(NESTING):
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if part not in annotation.model_fields:
                return f"{name}: {'.'.join(walked) or 'Settings'} has no field {part!r}"
            if annotation is Settings and Settings.model_fields[part].validation_alias is not None:
                return f"{name}: {part} is read only from {Settings.model_fields[part].validation_alias}"
            annotation = annotation.model_fields[part].annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]  # a key (tenant, mailbox): any name
        else:
            return f"{name}: {'.'.join(walked)} is a single value, not a section"
        walked.append(part)
    return None


def command_problem(args: list[str]) -> str | None:
    """Why ``rcaflow <args>`` is not a command line rcaflow understands (None when it is): each word a
    subcommand until the leaf, each ``--option`` one of the leaf's options."""
    command: click.Command = cli
    ctx = click.Context(cli)
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        word = rest.pop(0)
        sub = command.get_command(ctx, word)
        if sub is None:
            return f"rcaflow {' '.join(args)}: no subcommand {word!r}"
        command = sub
    if isinstance(command, click.Group):
        return f"rcaflow {' '.join(args)}: {command.name} needs a subcommand"
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [a.split("=", 1)[0] for a in rest if a.startswith("--") and a.split("=", 1)[0] not in options]
    if unknown:
        return f"rcaflow {' '.join(args)}: {command.name} has no option {', '.join(unknown)}"
    return None
