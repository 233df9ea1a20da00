"""The settings reference and example files are what the Settings model gives, and they load."""

from __future__ import annotations

import yaml

from streams.settings import Settings
from streams.settings_fields import iter_settings
from streams.settings_reference import OUTPUTS, ROOT, settings_rows, stale


def test_generated_files_match_the_settings_model() -> None:
    out_of_date = stale()
    assert not out_of_date, (f"{', '.join(out_of_date)} differ from streams/settings.py: run `make config-docs` "
                             "(python -m streams.settings_reference) and commit the result")


def test_every_setting_is_in_the_reference_with_its_env_var_and_default() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for row in iter_settings(Settings):
        assert f"`{row.path}`" in text, row.path
        for env in row.env:
            assert f"`{env}`" in text, env
    assert "| `api.port` | `RCAFLOW_API__PORT` | int | `8080` |" in text
    assert "`executor.dry_run` | `RCAFLOW_EXECUTOR__DRY_RUN` | bool | `true` |" in text


def test_secrets_are_marked_and_their_defaults_never_shown() -> None:
    rows = {row.path: row for row in settings_rows()}
    for path in ("kafka.security.password", "security.decision_key", "tenants.<name>.token",
                 "approvals.link_secret", "notify.tenants.<name>.slack.token", "qwen_api_key"):
        assert rows[path].secret, path
    for path in ("kafka.security.key_file", "evidence.cluster.token_file", "api.port"):
        assert not rows[path].secret, path


def test_a_section_built_by_its_default_factory_shows_that_instances_values() -> None:
    rows = {row.path: row for row in settings_rows()}
    assert rows["msgraph.round_retry.cap_seconds"].default == "900.0"  # not RetryPolicy's own 60.0
    assert rows["msgraph.retry.cap_seconds"].default == "60.0"


def test_the_example_yaml_as_shipped_sets_nothing() -> None:
    text = (ROOT / "rcaflow.example.yaml").read_text(encoding="utf-8")
    assert (yaml.safe_load(text) or {}) == {}
    assert "#   port: 8080" in text and "#   dry_run: true" in text


def test_the_env_example_names_every_variable() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    for row in iter_settings(Settings):
        if row.env:
            assert f"#{row.env[0]}=" in text, row.env[0]


def test_outputs_are_the_three_documented_files() -> None:
    assert set(OUTPUTS) == {"docs/configuration.md", "rcaflow.example.yaml", ".env.example"}


def test_every_setting_says_what_it_is_for() -> None:
    missing = [row.path for row in settings_rows() if not row.description]
    assert not missing, ("settings without a description (a `#:` comment above the field, or "
                         f"Field(description=...)), then run `make config-docs`: {', '.join(missing)}")
