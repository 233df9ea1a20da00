"""``rcaflow msgraph subscribe|status|renew`` against the stand-in over TLS, through msal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from streams.commands.msgraph import msgraph
from tests.unit.producers.msgraph.conftest import STATE, USER
from tests.unit.producers.msgraph.standin import (
    CLIENT_ID,
    CLIENT_SECRET,
    DIRECTORY,
    GraphStandIn,
    self_signed,
    serve_tls,
)


@pytest.fixture
def graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GraphStandIn, Path]]:
    standin = GraphStandIn()
    certfile, keyfile = self_signed(tmp_path)
    # The CLI builds its own clients; point their CA bundles (requests, httpx) at the stand-in's cert.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certfile)
    monkeypatch.setenv("SSL_CERT_FILE", certfile)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with serve_tls(standin.app(), certfile, keyfile) as port:
        base = f"https://localhost:{port}"
        config = {
            "directory_id": DIRECTORY, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "authority_host": base, "graph_url": f"{base}/v1.0",
            "notification_url": "https://rcaflow.example/msgraph/webhook",
            "mailboxes": [{"user": USER, "tenant": "acme", "client_state": STATE}],
        }
        path = tmp_path / "msgraph.yaml"
        path.write_text(yaml.safe_dump(config))
        yield standin, path


def test_status_subscribe_renew(graph: tuple[GraphStandIn, Path]) -> None:
    standin, path = graph
    runner = CliRunner()

    missing = runner.invoke(msgraph, ["status", "--msgraph-config", str(path)])
    assert missing.exit_code == 1
    assert "NO SUBSCRIPTION" in missing.output

    created = runner.invoke(msgraph, ["subscribe", "--msgraph-config", str(path)])
    assert created.exit_code == 0, created.output
    (sub_id,) = standin.subscriptions
    assert sub_id in created.output

    ok = runner.invoke(msgraph, ["status", "--msgraph-config", str(path)])
    assert ok.exit_code == 0
    assert "min left" in ok.output and "renewal due" not in ok.output

    forced = runner.invoke(msgraph, ["renew", "--force", "--msgraph-config", str(path)])
    assert forced.exit_code == 0
    assert f"{sub_id}\trenewed" in forced.output
    assert CLIENT_SECRET not in created.output + ok.output + forced.output


def test_missing_configuration_is_a_usage_error() -> None:
    result = CliRunner().invoke(msgraph, ["status"])
    assert result.exit_code == 2
    assert "no Graph configuration" in result.output
