"""`rcaflow --help` answers from a table, so it must say what each command says of itself, and load nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from streams.cli import LAZY_COMMANDS, cli, short_help

ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_the_listed_line_is_the_commands_own_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    assert command.get_short_help_str(200) == short_help(name, 200)


def test_help_lists_every_command_and_imports_none_of_them() -> None:
    probe = ("import json, sys\nfrom click.testing import CliRunner\nfrom streams.cli import cli\n"
             "out = CliRunner().invoke(cli, ['--help']).output\n"
             "print(json.dumps({'out': out, 'modules': sorted(m for m in sys.modules if m.startswith('streams'))}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=60)
    result = json.loads(done.stdout)
    listed = [line.split()[0] for line in result["out"].split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(LAZY_COMMANDS)
    assert result["modules"] == ["streams", "streams.cli"], "rcaflow --help imported more than the command table"
