"""`rcaflow parse FILE.eml...`: what the normalize stage would publish for each mail, without a broker.

Each event is classified by the policy file as the normalize stage does (``--policy`` or the configured
``policies_file``), so the printed ``alert_class`` is the one the pipeline would use.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from policies import PolicyFileError, PolicySet, load_policies
from producers.mail import MailParseError, TemplateConfigError, load_templates, parse_mail
from schemas.records import EventSource, SourceKind
from streams.commands.context import settings_or_none
from streams.settings import Settings
from streams.wiring.runtime import build_policies, build_templates


def _cluster_names(ctx: click.Context, tenant: str, given: tuple[str, ...]) -> dict[str, str]:
    names: dict[str, str] = {}
    settings = ctx.find_root().obj
    tenants = getattr(settings, "tenants", None)
    if isinstance(tenants, dict) and tenant in tenants:
        names.update(getattr(tenants[tenant], "cluster_names", {}) or {})
    for item in given:
        uuid, sep, name = item.partition("=")
        if not sep or not uuid or not name:
            raise click.BadParameter(f"expected UUID=NAME, got {item!r}", param_hint="--cluster-name")
        names[uuid.strip()] = name.strip()
    return names


def _policies(settings: Settings, path: Path | None) -> PolicySet:
    try:
        return load_policies(path) if path is not None else build_policies(settings)
    except PolicyFileError as exc:
        raise click.ClickException("\n".join(str(error) for error in exc.errors)) from exc


@click.command("parse")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", default="default", show_default=True, help="Tenant the mails belong to.")
@click.option("--templates", "template_paths", multiple=True,
              type=click.Path(exists=True, path_type=Path),
              help="Template YAML file or folder (repeatable); default: the configured templates "
                   "(the bundled ones plus mail.templates).")  # fmt: skip
@click.option("--cluster-name", "cluster_names", multiple=True, metavar="UUID=NAME",
              help="Readable name for a cluster id (repeatable); adds to the tenant's settings.")  # fmt: skip
@click.option("--policy", "policy_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Remediation policy file that classifies the alerts; default: the configured one "
                   "(policies_file, else the bundled policy).")  # fmt: skip
@click.pass_context
def parse(
    ctx: click.Context,
    files: tuple[Path, ...],
    tenant: str,
    template_paths: tuple[Path, ...],
    cluster_names: tuple[str, ...],
    policy_path: Path | None,
) -> None:
    """Print each mail's AlertEvents as JSON lines; a mail without alerts prints {"file", "error"}.

    Exits 1 at the end when any mail failed, so scripts can check a whole folder.
    """
    try:
        settings = settings_or_none(ctx) or Settings()
        registry = load_templates(list(template_paths)) if template_paths else build_templates(settings)
    except TemplateConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    policies = _policies(settings, policy_path)
    names = _cluster_names(ctx, tenant, cluster_names)
    failed = 0
    for path in files:
        source = EventSource(kind=SourceKind.FILE, mailbox=str(path))
        received_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        try:
            parsed = parse_mail(
                path.read_bytes(),
                tenant=tenant,
                received_at=received_at,
                source=source,
                registry=registry,
                cluster_names=names,
            )
        except MailParseError as exc:
            failed += 1
            click.echo(json.dumps({"file": str(path), "error": exc.message}, ensure_ascii=False))
            continue
        for event in parsed.events:
            click.echo(event.model_copy(update={"alert_class": policies.classify(event)}).model_dump_json())
        for warning in parsed.warnings:
            click.echo(f"{path}: {warning}", err=True)
    if failed:
        click.echo(f"{failed} of {len(files)} mail(s) had no alert", err=True)
        sys.exit(1)
