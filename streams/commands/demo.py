"""``rcaflow demo``: the bundled sample mails through the whole pipeline, one row per alert."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from streams.commands.context import settings_of


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout (logs stay on stderr).")
@click.option("--samples", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of .eml files (default: the bundled samples/).")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for all results.")
@click.option("--rounds", default=2, show_default=True, help="Feed the mails this many times (2 shows dedup).")
@click.pass_context
def demo(ctx: click.Context, as_json: bool, samples: Path | None, timeout: float, rounds: int) -> None:
    """Feed the sample mails through the whole pipeline and print what happened to each."""
    from streams.ops.demo import run_demo

    sys.exit(run_demo(settings_of(ctx), samples_dir=samples, as_json=as_json, timeout=timeout, rounds=rounds))
