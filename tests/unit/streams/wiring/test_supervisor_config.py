"""The processes `rcaflow run` starts read the parent's configuration: file, secrets dir, log level, mailboxes."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from streams.errors import ConfigurationError
from streams.settings import Settings, load_settings
from streams.wiring.decision_keys import with_decision_key
from streams.wiring.supervisor import ROLES, Stack, origin_args, role_command, run_roles


def test_settings_loaded_from_a_file_hand_the_file_and_secrets_dir_to_children(tmp_path: Path) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text("api: {port: 18123}\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    settings = load_settings(config, secrets).model_copy(update={"log_level": "DEBUG"})  # as --log-level does
    # Whatever the parent overrides in code (decision key, prefixes) keeps the origin.
    settings, _ = with_decision_key(settings, {})
    assert origin_args(settings) == ["--config", str(config.resolve()), "--secrets-dir", str(secrets.resolve()),
                                     "--log-level", "DEBUG"]


def test_settings_built_in_code_add_nothing() -> None:
    assert origin_args(Settings()) == []
    assert origin_args(load_settings()) == ["--log-level", "INFO"]


def test_run_starts_one_imap_producer_per_configured_mailbox() -> None:
    box = {"host": "imap.example.com", "username": "alerts", "tenant": "default", "password": "made-up"}
    settings = Settings(mailboxes={"ops": box, "dba": box})
    roles = run_roles(settings)
    assert roles == (*ROLES, "imap:dba", "imap:ops")
    assert role_command("imap:ops") == ["ingest", "imap", "--mailbox", "ops", "--metrics-port", "0"]
    assert role_command("worker") == ["worker"]
    assert run_roles(Settings()) == ROLES


def test_a_mailbox_name_that_cannot_be_a_role_is_refused() -> None:
    box = {"host": "imap.example.com", "username": "alerts", "tenant": "default", "password": "made-up"}
    with pytest.raises(ConfigurationError, match="mailbox name"):
        run_roles(Settings(mailboxes={"../etc": box}))


def test_a_replay_child_drops_the_files_chat_targets_where_the_environment_cannot(tmp_path: Path) -> None:
    """``RCAFLOW_NOTIFY__TENANTS={}`` is merged key by key with the file and leaves its tenants; the reset does not."""
    config = tmp_path / "rcaflow.yaml"
    config.write_text("notify:\n  tenants:\n    default:\n      slack: {token: xoxb-made-up, channel: C1}\n"
                      "approvals:\n  approvers: {default: ['link:ops']}\n")
    from click.testing import CliRunner

    from streams.cli import cli

    seen: list[Settings] = []

    @cli.command("show-settings", hidden=True)
    @click.pass_context
    def show(ctx: click.Context) -> None:
        seen.append(ctx.find_root().obj)

    try:
        env = {"RCAFLOW_NOTIFY__TENANTS": "{}"}
        done = CliRunner().invoke(cli, ["--config", str(config), "show-settings"], env=env)
        assert done.exit_code == 0, done.output
        assert seen[-1].notify.tenants, "the environment alone cannot take the file's chat targets away"
        done = CliRunner().invoke(cli, ["--config", str(config), "--reset-section", "notify", "--reset-section",
                                        "approvals", "show-settings"], env=env)
        assert done.exit_code == 0, done.output
        assert not seen[-1].notify.tenants and not seen[-1].approvals.approvers
        assert seen[-1].origin is not None and seen[-1].origin.config_file == config.resolve()
    finally:
        cli.commands.pop("show-settings", None)


def test_stack_starts_each_child_with_the_origin_and_the_resets(tmp_path: Path) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text("log_level: WARNING\n")
    stack = Stack(load_settings(config), roles=(), env={"PATH": "/usr/bin:/bin"}, log_dir=tmp_path,
                  reset_sections=("notify", "approvals"))
    child = stack.start_role("imap:nowhere")  # no such mailbox: the child refuses at once, after parsing its options
    try:
        child.wait(60)
    finally:
        stack.stop()
    args = [str(a) for a in child.args]
    assert args[1:] == ["-m", "streams.cli", "--config", str(config.resolve()), "--log-level", "WARNING",
                        "--reset-section", "notify", "--reset-section", "approvals",
                        "ingest", "imap", "--mailbox", "nowhere", "--metrics-port", "0"]
    assert "no mailbox configured" in (tmp_path / "imap-nowhere.log").read_text()
