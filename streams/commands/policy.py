"""``rcaflow policy``: check a remediation policy file before it is deployed."""

from __future__ import annotations

from pathlib import Path

import click

from policies import PolicyFileError, load_policies


@click.group("policy")
def policy() -> None:
    """Work with remediation policy files."""


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def check(file: Path) -> None:
    """Validate FILE; print "ok: N classes" or every error as file:line: field: message (exit 1)."""
    try:
        policies = load_policies(file)
    except PolicyFileError as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        raise SystemExit(1) from exc
    click.echo(f"ok: {len(policies.classes)} classes")
