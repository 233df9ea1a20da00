"""What every subcommand reads from the ``rcaflow`` group: the Settings built once from file and environment."""

from __future__ import annotations

import click

from streams.settings import KafkaSettings, Settings, client_config


def settings_of(ctx: click.Context) -> Settings:
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        raise click.UsageError("no settings loaded (run this through the rcaflow command)")
    return settings


def kafka_client_of(settings: Settings | None, bootstrap: str) -> dict[str, str | int]:
    """Client properties for ``bootstrap`` (which ``--bootstrap`` may override) with the configured security."""
    return client_config(settings.kafka if settings is not None else KafkaSettings(), bootstrap)


def settings_or_none(ctx: click.Context) -> Settings | None:
    """For tools that also work with explicit options only (e.g. ``--bootstrap``)."""
    settings = ctx.find_root().obj
    return settings if isinstance(settings, Settings) else None
