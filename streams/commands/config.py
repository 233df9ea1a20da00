"""``rcaflow config check``: is the configuration valid, what is in effect, and where each value came from."""

from __future__ import annotations

from pathlib import Path

import click

from streams.commands.context import settings_of


@click.group()
def config() -> None:
    """Check the configuration: the effective settings, secrets masked (docs/configuration.md)."""


@config.command("check")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="YAML settings file to check instead of the one rcaflow was started with.")
@click.pass_context
def check(ctx: click.Context, config_file: Path | None) -> None:
    """Print the effective settings as YAML, every secret as ***, each value with where it came from.

    An invalid configuration (unknown key, wrong type, contradiction) is one line per problem and exit code 2,
    as for every command; this one only reads, so it is safe to run anywhere.
    """
    from streams.ops.config_report import origins, render
    from streams.settings import load_settings

    settings = settings_of(ctx)
    origin = settings.origin
    secrets_dir = origin.secrets_dir if origin is not None else None
    if config_file is not None:
        settings = load_settings(config_file, secrets_dir)  # raises ConfigurationError: one line per problem
    else:
        config_file = origin.config_file if origin is not None else None
    click.echo("# rcaflow effective configuration; secrets are ***. After each value: where it came from "
               "(nothing: the default).")
    click.echo(f"# file: {config_file or '(none)'}; secrets dir: {secrets_dir or '(none)'}")
    click.echo(render(settings, origins(config_file, secrets_dir)), nl=False)
