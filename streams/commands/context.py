"""What every subcommand reads from the ``rcaflow`` group: the Settings built once from file and environment."""

from __future__ import annotations

import click

from streams.settings import KafkaSettings, Settings, client_config


def reset_sections(settings: Settings, names: tuple[str, ...] | list[str]) -> Settings:
    """``settings`` with the named top-level sections back at their defaults, whatever file, secrets dir or
    environment said.

    For process groups that must read the deployment's configuration minus what reaches the world (a replay's
    shadow roles: no chat, no approvals): an environment variable cannot take a section away, because the
    settings sources are merged key by key (``RCAFLOW_NOTIFY__TENANTS={}`` leaves the file's tenants in place).
    """
    unknown = sorted(set(names) - set(Settings.model_fields))
    if unknown:
        raise click.UsageError(f"--reset-section: no settings section {', '.join(unknown)}")
    defaults = {name: Settings.model_fields[name].get_default(call_default_factory=True) for name in names}
    return settings.model_copy(update=defaults) if defaults else settings


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
