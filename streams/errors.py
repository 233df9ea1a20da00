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


class KafkaAuthError(StreamsError):
    """The Kafka cluster refused this client's credentials or security protocol: fix ``kafka.security``.

    Retrying cannot help, so processes exit at once (the CLI prints the one line, exit code 2) and the
    ``rcaflow run`` supervisor does not restart them. The message names the broker, the protocol, the
    mechanism and the user, never the password.
    """
