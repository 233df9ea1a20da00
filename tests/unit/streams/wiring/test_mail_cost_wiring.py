"""The mail intakes count a mail's alerts with the deployment's templates, the same the worker parses with."""

from __future__ import annotations

from pathlib import Path

from producers.mail import bundled_templates_dir
from streams.settings import MailSettings, Settings
from streams.wiring.tenants import build_mail_cost

DIGEST = (Path(__file__).resolve().parents[3] / "fixtures" / "mail" / "dce5_control_cluster_details"
          / "rowspan-cluster-digest.eml").read_bytes()


def test_the_default_templates_count_a_digests_rows() -> None:
    assert build_mail_cost(Settings())(DIGEST) == 6


def test_the_deployments_templates_decide_the_count() -> None:
    """Only the Alertmanager layout configured: the worker reads no alert from the DCE digest, so it costs one."""
    settings = Settings(mail=MailSettings(bundled_templates=False,
                                          templates=[bundled_templates_dir() / "alertmanager.yaml"]))
    assert build_mail_cost(settings)(DIGEST) == 1
