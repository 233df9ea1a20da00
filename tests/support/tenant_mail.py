"""The bundled Jenkins-restart mail, re-addressed: another sender, naming another namespace and pod.

Tenant-scope tests need the same realistic DCE 5 mail to come from different senders and
name different targets (kube-system/coredns-0 for the reproduced incident); only the
From header and the namespace/pod in the table change.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from email.message import EmailMessage
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "jenkins_restart.eml"
SAMPLE_NAMESPACE = "amamba-system"
SAMPLE_POD = "amamba-jenkins-0"


def jenkins_mail(*, sender: str, namespace: str = SAMPLE_NAMESPACE, pod: str = SAMPLE_POD) -> bytes:
    """The sample mail from ``sender`` about ``namespace``/``pod``, with a fresh Message-ID."""
    message = email.message_from_bytes(SAMPLE.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    html = message.get_content().replace(SAMPLE_NAMESPACE, namespace).replace(SAMPLE_POD, pod)
    message.set_content(html, subtype="html", charset="utf-8", cte="quoted-printable")
    message.replace_header("From", sender)
    message.replace_header("Message-ID", f"<{uuid.uuid4().hex}@tenant-scope.test>")
    return message.as_bytes()
