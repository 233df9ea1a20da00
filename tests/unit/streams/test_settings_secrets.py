"""Secrets in the configuration: read from where operators mount them, never echoed when something is wrong."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import get_args, get_origin

import pytest
from pydantic import BaseModel, SecretStr

from streams.errors import ConfigurationError
from streams.settings import Settings, load_settings

#: Made up per run (hex after a fixed head, so YAML reads it as one plain word); never a real secret.
SECRET = "Zq9-" + secrets.token_hex(14)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("RCAFLOW_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "QWEN_API_KEY"):
            monkeypatch.delenv(name)
    yield


def _leaks(text: str, secret: str = SECRET) -> bool:
    """Any six consecutive characters of the secret: a prefix or a middle is as bad as the whole."""
    return any(secret[i:i + 6] in text for i in range(len(secret) - 5))


def _secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        yield from _secrets_in(field.annotation, (*prefix, name))


def _secrets_in(annotation: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if annotation is SecretStr:
        yield path
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from _secret_paths(annotation, path)
    elif get_origin(annotation) is dict:
        yield from _secrets_in(get_args(annotation)[1], (*path, "acme"))
    else:
        for member in get_args(annotation):
            yield from _secrets_in(member, path)


def test_the_sweep_finds_the_secrets_it_is_meant_to_guard() -> None:
    paths = set(_secret_paths(Settings))
    assert ("approvals", "link_secret") in paths and ("qwen_api_key",) in paths


def test_subdirectories_of_the_secrets_dir_are_sections(tmp_path: Path) -> None:
    (tmp_path / "approvals").mkdir()
    (tmp_path / "approvals" / "link_secret").write_text(SECRET)
    (tmp_path / "tenants" / "acme").mkdir(parents=True)
    (tmp_path / "tenants" / "acme" / "token").write_text("acme-token")

    settings = load_settings(None, tmp_path)

    assert settings.approvals.link_secret is not None
    assert settings.approvals.link_secret.get_secret_value() == SECRET
    token = settings.tenants["acme"].token
    assert token is not None and token.get_secret_value() == "acme-token"


def test_a_kubernetes_secret_key_nests_with_double_underscores(tmp_path: Path) -> None:
    """A Secret's keys cannot contain '/', so a mounted Secret names nested fields the way env vars do."""
    (tmp_path / "approvals__slack_signing_secret").write_text(SECRET)
    (tmp_path / "qwen_api_key").write_text("sk-top-level")

    settings = load_settings(None, tmp_path)

    assert settings.approvals.slack_signing_secret is not None
    assert settings.approvals.slack_signing_secret.get_secret_value() == SECRET
    assert settings.qwen_api_key is not None and settings.qwen_api_key.get_secret_value() == "sk-top-level"


def test_a_nested_secret_that_names_no_setting_is_refused_by_path(tmp_path: Path) -> None:
    (tmp_path / "approvals").mkdir()
    (tmp_path / "approvals" / "link_secrte").write_text(SECRET)

    with pytest.raises(ConfigurationError) as refused:
        load_settings(None, tmp_path)

    message = str(refused.value)
    assert "approvals/link_secrte does not name a setting" in message and "link_secret" in message
    assert not _leaks(message)


def test_other_files_beside_the_secrets_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "..data").mkdir()  # a Kubernetes volume's own bookkeeping
    (tmp_path / "..data" / "whatever__thing").write_text("x")

    assert load_settings(None, tmp_path).approvals.link_secret is None


@pytest.mark.parametrize("document", [
    "qwen_api_key: *{s}\n",           # a password starting with '*' reads as an alias
    "qwen_api_key: !{s} x\n",         # ... with '!' as a tag
    "qwen_api_key: [{s}\n",           # an unclosed flow sequence
    "qwen_api_key: '{s}\n",           # an unclosed quote
    "api:\n  port: {s}\n",            # a secret pasted into the wrong field
    "tenants: {s}\n",
    "approvals:\n  link_ttl_minutes: {s}\n",
])
def test_a_config_file_error_never_quotes_a_secret(tmp_path: Path, document: str) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text(document.format(s=SECRET))

    with pytest.raises(ConfigurationError) as refused:
        load_settings(config)

    assert not _leaks(str(refused.value)), str(refused.value)


@pytest.mark.parametrize("path", sorted(_secret_paths(Settings)), ids=".".join)
def test_no_secret_field_is_echoed_when_its_section_is_wrong(monkeypatch: pytest.MonkeyPatch,
                                                              path: tuple[str, ...]) -> None:
    """The secret set as a good value next to a wrong sibling, then as a wrong type: neither error quotes it."""
    env_name = "QWEN_API_KEY" if path == ("qwen_api_key",) else "RCAFLOW_" + "__".join(p.upper() for p in path)
    monkeypatch.setenv(env_name, SECRET)
    monkeypatch.setenv("RCAFLOW_API__PORT", SECRET)
    with pytest.raises(ConfigurationError) as wrong_sibling:
        load_settings()

    monkeypatch.delenv("RCAFLOW_API__PORT")
    monkeypatch.setenv(env_name, '{"not": "' + SECRET + '"}')
    try:
        load_settings()
        wrong_type = ""
    except ConfigurationError as exc:  # a dict where a string belongs; some fields take JSON, which is fine
        wrong_type = str(exc)

    assert not _leaks(str(wrong_sibling.value)), str(wrong_sibling.value)
    assert not _leaks(wrong_type), wrong_type
