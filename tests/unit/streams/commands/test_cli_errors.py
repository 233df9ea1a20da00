"""`rcaflow` at the process boundary: our errors are one line and exit 2, a bug keeps its traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from schemas.errors import RcaflowError
from streams.cli import cli, main
from streams.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No broker, no config file, no stray RCAFLOW_* from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("RCAFLOW_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "QWEN_API_KEY"):
            monkeypatch.delenv(name)
    yield


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``main()`` as the console script does; (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["rcaflow", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def test_a_bad_environment_setting_is_one_line_naming_the_field(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RCAFLOW_API__PORT", "notanumber")
    code, err = _main(monkeypatch, capsys, "api")
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("rcaflow: "), err
    assert "api.port" in err and "valid integer" in err
    assert "notanumber" not in err  # values are never echoed: any of them may be a secret


def test_a_yaml_file_whose_top_level_is_a_list_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text("- api\n- worker\n")
    code, err = _main(monkeypatch, capsys, "--config", str(config), "api")
    assert (code, err) == (2, f"rcaflow: {config}: top level must be a mapping, not a list\n")


def test_malformed_yaml_names_the_position_but_not_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text("api:\n  host: 127.0.0.1\nqwen_api_key: [sk-s3cret\n")
    code, err = _main(monkeypatch, capsys, "--config", str(config), "api")
    assert code == 2, err
    assert err.count("\n") == 1 and "not valid YAML at line" in err, err
    assert "s3cret" not in err


def test_a_configuration_error_raised_by_a_command_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main(monkeypatch, capsys, "api")  # no KAFKA_BOOTSTRAP_SERVERS: require_bootstrap refuses
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("rcaflow: KAFKA_BOOTSTRAP_SERVERS is not set."), err


def test_any_rcaflow_error_is_mapped_by_type(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    class Refusal(RcaflowError):  # noqa: N818 - no "Error" suffix on purpose: the type decides, not the name
        """A refusal of ours that a name-based check would miss."""

    @click.command()
    def refuse() -> None:
        raise Refusal("nothing to do here")

    monkeypatch.setitem(cli.commands, "refuse", refuse)
    assert _main(monkeypatch, capsys, "refuse") == (2, "rcaflow: nothing to do here\n")


def test_an_error_that_is_not_ours_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command()
    def crash() -> None:
        raise KeyError("a bug")  # ends in "Error" and is not ours: must not pass for a clean refusal

    monkeypatch.setitem(cli.commands, "crash", crash)
    monkeypatch.setattr(sys, "argv", ["rcaflow", "crash"])
    with pytest.raises(KeyError, match="a bug"):
        main()


def test_the_console_script_prints_no_traceback_for_bad_settings() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCAFLOW_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["RCAFLOW_API__PORT"] = "notanumber"
    done = subprocess.run([sys.executable, "-m", "streams.cli", "api"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "rcaflow: invalid settings (environment): api.port: Input should be a valid integer, "
        "unable to parse string as an integer",
    ]


def test_configuration_error_is_ours_and_not_retriable() -> None:
    err = ConfigurationError("x")
    assert isinstance(err, RcaflowError) and err.retriable is False
