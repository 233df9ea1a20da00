"""The streams package's error base, and the configuration error every entry point can raise."""

from __future__ import annotations

from schemas.errors import RcaflowError


class StreamsError(RcaflowError):
    """Base of errors raised by ``streams`` itself (wiring, broker, ops, api, notify, executor glue).

    Errors that come from the layers below keep their own trees (``ProducerError``,
    ``ExecutorError``, ``PolicyError``, ``SchemaError``); all meet at ``RcaflowError``,
    which is what the CLI and the agents' boundaries map.
    """


class ConfigurationError(StreamsError):
    """The settings are missing, malformed or contradictory: fix the configuration, retrying cannot help.

    Messages name the setting (``api.port``, ``KAFKA_BOOTSTRAP_SERVERS``) and the problem,
    never the value, because the value may be a secret.
    """
