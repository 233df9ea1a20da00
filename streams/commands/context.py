"""What every subcommand reads from the ``rcaflow`` group: the Settings built once from file and environment."""

from __future__ import annotations

import click

from streams.settings import Settings


def settings_of(ctx: click.Context) -> Settings:
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        raise click.UsageError("no settings loaded (run this through the rcaflow command)")
    return settings


def settings_or_none(ctx: click.Context) -> Settings | None:
    """For tools that also work with explicit options only (e.g. ``--bootstrap``)."""
    settings = ctx.find_root().obj
    return settings if isinstance(settings, Settings) else None
