"""The decision keys from the settings: for the signing worker, the verifying executor, ``rcaflow rollback``,
and a process group on one machine that has none configured."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from pydantic import SecretStr

from policies.decision_signature import DecisionKeys
from streams.errors import ConfigurationError
from streams.settings import Settings

logger = logging.getLogger(__name__)

#: The environment variable that hands the decision key to child processes (the settings read it).
DECISION_KEY_ENV = "RCAFLOW_SECURITY__DECISION_KEY"


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


def with_decision_key(settings: Settings, env: Mapping[str, str]) -> tuple[Settings, dict[str, str]]:
    """For a process group on one machine (``rcaflow run``, demo, replay): the configured key, or one random key
    made now and handed to the children through ``env``. Approvals signed with a made-up key verify only within
    this run. The key is never logged."""
    child_env = dict(env)
    if settings.security.decision_key is not None or child_env.get(DECISION_KEY_ENV):
        return settings, child_env
    key = secrets.token_urlsafe(48)
    child_env[DECISION_KEY_ENV] = key
    security = settings.security.model_copy(update={"decision_key": SecretStr(key)})
    logger.warning("no security.decision_key configured: this run signs and verifies approved actions with a "
                   "random key of its own (set %s to keep approvals valid across restarts and for rcaflow "
                   "rollback)", DECISION_KEY_ENV)
    return settings.model_copy(update={"security": security}), child_env
