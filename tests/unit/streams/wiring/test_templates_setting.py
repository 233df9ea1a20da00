"""A deployment adds its own mail layouts by configuration: the mail.templates folders reach every parser."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from producers.mail import bundled_templates_dir
from schemas.records import AlertEvent, RawMail, SourceKind
from streams.cli import cli
from streams.settings import MailSettings, Settings
from streams.stages.core import Position
from streams.wiring.runtime import ConfigurationError, build_stages, build_templates

ROOT = Path(__file__).resolve().parents[4]
MAIL = ROOT / "samples" / "alertmanager-default-remote-write.eml"


def _customer_folder(tmp_path: Path) -> Path:
    """The bundled Alertmanager layout under the customer's own id, ranked first."""
    spec = yaml.safe_load((bundled_templates_dir() / "alertmanager.yaml").read_text(encoding="utf-8"))
    template = spec["templates"][0]
    template.update({"id": "acme_alertmanager", "priority": 1})
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "acme.yaml").write_text(yaml.safe_dump({"templates": [template]}), encoding="utf-8")
    return folder


def test_the_normalize_stage_uses_the_configured_templates_next_to_the_bundled_ones(tmp_path: Path) -> None:
    settings = Settings(mail=MailSettings(templates=[_customer_folder(tmp_path)]))
    ids = [t.id for t in build_templates(settings).templates]
    assert "acme_alertmanager" in ids and "dce5_control_cluster_details" in ids

    mail = RawMail(tenant="acme", message_id="<1@x>", mailbox="t", source=SourceKind.FILE,
                   received_at=datetime.now(UTC), raw=MAIL.read_bytes())
    (out, *_) = build_stages(settings).normalize(mail, Position("raw-mail", 0, 1)).outputs
    assert isinstance(out.record, AlertEvent) and out.record.parser.startswith("acme_alertmanager")


def test_without_the_bundled_templates_only_the_configured_ones_load(tmp_path: Path) -> None:
    settings = Settings(mail=MailSettings(templates=[_customer_folder(tmp_path)], bundled_templates=False))
    assert [t.id for t in build_templates(settings).templates] == ["acme_alertmanager"]
    with pytest.raises(ConfigurationError, match=r"mail\.templates"):
        build_templates(Settings(mail=MailSettings(bundled_templates=False)))


def test_rcaflow_parse_reads_the_templates_of_the_configuration_file(tmp_path: Path) -> None:
    config = tmp_path / "rcaflow.yaml"
    config.write_text(yaml.safe_dump({"mail": {"templates": [str(_customer_folder(tmp_path))]}}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "parse", str(MAIL)])
    assert result.exit_code == 0, result.output
    assert '"parser":"acme_alertmanager@1"' in result.output.replace(" ", "")
