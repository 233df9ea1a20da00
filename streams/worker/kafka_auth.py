"""``kafka.security`` for Faust (aiokafka underneath): the same settings the confluent-kafka clients get.

Lives in the worker room because only it may import Faust; the librdkafka translation of the same
section is :func:`streams.settings.librdkafka_security`.
"""

from __future__ import annotations

import ssl

import faust
from faust.types.auth import CredentialsT

from streams.errors import ConfigurationError
from streams.settings import KafkaSecuritySettings


def faust_credentials(security: KafkaSecuritySettings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for ``security``; None for PLAINTEXT.

    A TLS protocol gets an :class:`ssl.SSLContext` that verifies the broker (certificate and host name)
    against ``ca_file`` or the system's trust store, with the client certificate for mutual TLS.
    """
    context = tls_context(security) if security.tls else None
    if security.sasl:
        # Faust derives SASL_SSL from the presence of a context, SASL_PLAINTEXT from its absence.
        return faust.SASLCredentials(
            username=security.username,
            password=security.password.get_secret_value() if security.password else None,
            mechanism=security.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def tls_context(security: KafkaSecuritySettings) -> ssl.SSLContext:
    """A client-side context: verify the brokers, present our certificate when one is configured."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(security.ca_file) if security.ca_file else None
        )
        if security.cert_file is not None and security.key_file is not None:
            context.load_cert_chain(
                str(security.cert_file),
                str(security.key_file),
                password=security.key_password.get_secret_value() if security.key_password else None,
            )
    except (OSError, ssl.SSLError) as exc:
        # Name the setting and the problem, not the file's contents (nor the key's password).
        raise ConfigurationError(f"kafka.security: cannot load the TLS files: {exc.strerror or exc}") from None
    return context
