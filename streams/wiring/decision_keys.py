"""The decision keys from the settings: for the signing worker, the verifying executor, ``rcaflow rollback``,
and a process group on one machine that has none configured; and the approval keys the API signs human
decisions with and the worker checks them with."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from pydantic import SecretStr

from policies.decision_signature import ApprovalKeys, DecisionKeys
from streams.errors import ConfigurationError
from streams.settings import Settings

logger = logging.getLogger(__name__)

#: The environment variable that hands the decision key to child processes (the settings read it).
DECISION_KEY_ENV = "RCAFLOW_SECURITY__DECISION_KEY"
#: The environment variable that hands the approval key to child processes.
APPROVAL_KEY_ENV = "RCAFLOW_SECURITY__APPROVAL_KEY"


def optional_decision_keys(settings: Settings) -> DecisionKeys | None:
    """The configured decision keys (current + previous), or None when no key is configured."""
    security = settings.security
    if security.decision_key is None:
        return None
    return DecisionKeys.from_text(security.decision_key.get_secret_value(),
                                  tuple(key.get_secret_value() for key in security.decision_previous_keys))


def build_decision_keys(settings: Settings, *, role: str) -> DecisionKeys:
    """The decision keys ``role`` cannot work without; a one-line ConfigurationError when none is configured."""
    keys = optional_decision_keys(settings)
    if keys is None:
        raise ConfigurationError(
            f"security.decision_key is not set: the {role} needs it (the worker signs the actions it approves, the "
            f"executor runs only what verifies); set {DECISION_KEY_ENV} (at least 32 bytes, the same for worker, "
            "executor and rcaflow rollback) or the secret file security/decision_key")
    return keys


def optional_approval_keys(settings: Settings) -> ApprovalKeys | None:
    """The configured approval keys (current + previous), or None when no approval key is configured."""
    security = settings.security
    if security.approval_key is None:
        return None
    return ApprovalKeys.from_text(security.approval_key.get_secret_value(),
                                  tuple(key.get_secret_value() for key in security.approval_previous_keys))


def build_approval_keys(settings: Settings, *, role: str) -> ApprovalKeys:
    """The approval keys ``role`` cannot work without; a one-line ConfigurationError when none is configured."""
    keys = optional_approval_keys(settings)
    if keys is None:
        raise ConfigurationError(
            f"security.approval_key is not set: the {role} needs it (the API signs every approval decision it "
            f"verified, the worker applies only what verifies); set {APPROVAL_KEY_ENV} (at least 32 bytes, the same "
            "for API and worker, different from the decision key) or the secret file security/approval_key")
    return keys


def with_decision_key(settings: Settings, env: Mapping[str, str]) -> tuple[Settings, dict[str, str]]:
    """For a process group on one machine (``rcaflow run``, demo, replay): the configured decision and approval
    keys, or random ones made now and handed to the children through ``env``. Approvals signed with a made-up
    key verify only within this run. A key is never logged."""
    child_env = dict(env)
    for field, env_name, what in (("decision_key", DECISION_KEY_ENV, "approved actions"),
                                  ("approval_key", APPROVAL_KEY_ENV, "approval decisions")):
        if getattr(settings.security, field) is not None or child_env.get(env_name):
            continue
        key = secrets.token_urlsafe(48)
        child_env[env_name] = key
        security = settings.security.model_copy(update={field: SecretStr(key)})
        settings = settings.model_copy(update={"security": security})
        logger.warning("no security.%s configured: this run signs and verifies %s with a random key of its own "
                       "(set %s to keep them valid across restarts)", field, what, env_name)
    return settings, child_env
