"""Tenant settings: sharing one deployment between tenants needs each tenant's senders and namespaces."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from streams.errors import ConfigurationError
from streams.settings import Settings, load_settings
from streams.wiring.runtime import build_scopes


def _load(tmp_path: Path, tenants: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [k for k in os.environ if k.startswith("RCAFLOW_TENANTS")]:
        monkeypatch.delenv(name)
    config = tmp_path / "rcaflow.yaml"
    config.write_text(yaml.safe_dump({"tenants": tenants}))
    return load_settings(config)


def test_two_tenants_without_senders_or_namespaces_is_one_clear_error_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _load(tmp_path, {"acme": {"namespaces": ["team-a-*"], "token": "s3cr3t-token"},
                         "other": {"senders": ["*@other.test"]}}, monkeypatch)
    message = str(caught.value)
    assert "tenant acme needs senders because more than one tenant is configured" in message
    assert "tenant other needs namespaces because more than one tenant is configured" in message
    assert "s3cr3t" not in message


def test_one_tenant_needs_neither(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(tmp_path, {"acme": {}}, monkeypatch)
    scope = build_scopes(settings)["acme"]
    assert not scope.may_write(cluster=None, namespace="team-a-web") and scope.accepts_sender("x@y.test")


def test_scopes_are_built_from_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(tmp_path, {
        "acme": {"namespaces": ["team-a-*"], "clusters": ["acme-*"], "senders": ["*@alerts.acme.test"]},
        "other": {"namespaces": ["team-b"], "senders": ["*@alerts.other.test"]},
    }, monkeypatch)
    scopes = build_scopes(settings)
    assert set(scopes) == {"acme", "other"}
    assert scopes["acme"].may_write(cluster="acme-prod", namespace="team-a-web")
    assert not scopes["acme"].may_read(cluster=None, namespace="team-b")
    assert scopes["other"].accepts_sender("vmalert@alerts.other.test")
    assert not scopes["stranger"].accepts_sender("vmalert@alerts.acme.test")
