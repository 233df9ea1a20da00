"""The embedded single-node broker rcaflow starts when no KAFKA_BOOTSTRAP_SERVERS is configured."""

from streams.broker.base import BrokerError, EmbeddedBroker, RunningBroker
from streams.broker.kafka_maven import DEFAULT_CACHE_ROOT, DEFAULT_KAFKA_VERSION, KafkaMavenBroker, ScramUser
from streams.broker.select import BrokerChoice, Prefer, choose_broker, decide
from streams.broker.tansu import TansuBroker

__all__ = [
    "DEFAULT_CACHE_ROOT",
    "DEFAULT_KAFKA_VERSION",
    "BrokerChoice",
    "BrokerError",
    "EmbeddedBroker",
    "KafkaMavenBroker",
    "Prefer",
    "RunningBroker",
    "ScramUser",
    "TansuBroker",
    "choose_broker",
    "decide",
]
