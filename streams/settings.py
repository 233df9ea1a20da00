"""The one place rcaflow reads its configuration (environment, secrets dir, optional YAML).

Built once in the composition root and handed down as sections; no other
module reads ``os.environ`` (STYLE.md §6).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from executors.evidence.auth import BackendAuth
from executors.tools.reload_targets import ReloadTarget
from producers.imap.config import ImapConfig
from producers.msgraph.config import MsgraphConfig
from schemas.tenant_label import OTHER_TENANT
from streams.errors import ConfigurationError
from streams.settings_unknown import unknown_in_data, unknown_in_environment

STATE_HOME = Path.home() / ".local" / "state" / "rcaflow"
CACHE_HOME = Path.home() / ".cache" / "rcaflow"


class EmbeddedBrokerSettings(BaseModel):
    #: Which embedded broker starts when no cluster is configured: auto (real Kafka when Java 17 is present,
    #: else Tansu), kafka or tansu (docs/embedded-broker.md).
    prefer: Literal["auto", "kafka", "tansu"] = "auto"
    #: Where the embedded broker keeps its log and metadata.
    data_dir: Path = STATE_HOME / "broker"
    #: Download cache of the embedded broker (Kafka's jars from Maven Central, resolved once).
    cache_dir: Path = CACHE_HOME
    #: Loopback port of the embedded broker; unset: a free one.
    port: int | None = None


KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecuritySettings(BaseModel):
    """How every Kafka client of rcaflow authenticates and encrypts: one section for all of them.

    Env: ``RCAFLOW_KAFKA__SECURITY__PROTOCOL``, ``…__SASL_MECHANISM``, ``…__USERNAME``, ``…__PASSWORD``,
    ``…__CA_FILE``, ``…__CERT_FILE``, ``…__KEY_FILE``, ``…__KEY_PASSWORD`` (or mounted secret files
    ``kafka/security/password``). Translated for librdkafka by :func:`librdkafka_security` and for Faust by
    ``streams.worker.kafka_auth``; ``kafka.client`` stays the raw escape hatch on top.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: What the cluster's listener speaks: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    protocol: KafkaProtocol = "PLAINTEXT"
    #: SASL mechanism, with a SASL_* protocol.
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    #: SASL user, with a SASL_* protocol (required then).
    username: str | None = None
    #: SASL password, with a SASL_* protocol: from the environment or the secrets dir
    #: (kafka/security/password).
    password: SecretStr | None = None
    #: PEM file of the CA(s) that signed the brokers' certificates; None: the system's trust store.
    ca_file: Path | None = None
    #: Client certificate and key (PEM) for mutual TLS; both or neither.
    cert_file: Path | None = None
    #: Client private key (PEM) for mutual TLS, with cert_file.
    key_file: Path | None = None
    #: Password of key_file when it is encrypted.
    key_password: SecretStr | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecuritySettings:
        # Contradictions are refused here, at start-up, rather than found as a hung client later.
        if self.sasl and (not self.username or self.password is None):
            raise ValueError(f"protocol {self.protocol} needs username and password")
        if not self.sasl and (self.username or self.password is not None):
            raise ValueError(f"username/password are set but protocol {self.protocol} does not use SASL: "
                             "set protocol to SASL_PLAINTEXT or SASL_SSL")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError(f"TLS files are set but protocol {self.protocol} does not use TLS: "
                             "set protocol to SSL or SASL_SSL")
        return self

    def describe(self) -> str:
        """``SASL_SSL SCRAM-SHA-512 as user alice``: for error lines; never the password."""
        if self.sasl:
            return f"{self.protocol} {self.sasl_mechanism} as user {self.username}"
        return self.protocol


def librdkafka_security(security: KafkaSecuritySettings) -> dict[str, str]:
    """The security section as librdkafka properties (confluent-kafka producers, consumers, admin clients)."""
    config: dict[str, str] = {"security.protocol": security.protocol.lower()}
    if security.sasl:
        config["sasl.mechanism"] = security.sasl_mechanism
        config["sasl.username"] = security.username or ""
        config["sasl.password"] = security.password.get_secret_value() if security.password else ""
    if security.ca_file is not None:
        config["ssl.ca.location"] = str(security.ca_file)
    elif security.tls:
        config["ssl.ca.location"] = "probe"  # the system's trust store, wherever this OS keeps it
    if security.cert_file is not None and security.key_file is not None:
        config["ssl.certificate.location"] = str(security.cert_file)
        config["ssl.key.location"] = str(security.key_file)
    if security.key_password is not None:
        config["ssl.key.password"] = security.key_password.get_secret_value()
    return config


class KafkaSettings(BaseModel):
    #: The cluster, host:port[,host:port...]; KAFKA_BOOTSTRAP_SERVERS wins. Neither set: `rcaflow run` starts
    #: the embedded broker.
    bootstrap_servers: str | None = None
    #: Put in front of every topic and consumer group (the worker's internal topics too): for a shared
    #: cluster.
    topic_prefix: str = ""
    #: Short session/heartbeat/commit timings (MEASURED.md): right for one machine and tests;
    #: on a shared production cluster set to false to use the clients' defaults.
    fast_rebalance: bool = True
    #: Authentication and encryption of every client (confluent-kafka and Faust alike).
    security: KafkaSecuritySettings = Field(default_factory=KafkaSecuritySettings)
    #: Raw librdkafka properties on top of everything else (the escape hatch; Faust does not read them).
    client: dict[str, str] = Field(default_factory=dict)
    #: One record per produce batch. Tansu under-reports the high watermark after multi-record
    #: batches (MEASURED.md), so consumers would stall; set automatically on the Tansu fallback.
    single_record_batches: bool = False
    embedded: EmbeddedBrokerSettings = Field(default_factory=EmbeddedBrokerSettings)


def producer_config(kafka: KafkaSettings) -> dict[str, str | int]:
    """librdkafka settings every rcaflow producer gets from the configuration.

    (The murmur2 partitioner that keeps keys co-partitioned with the Faust worker is a
    KafkaPublisher default, so every publisher has it, configured here or not.)
    """
    config: dict[str, str | int] = {**librdkafka_security(kafka.security), **kafka.client}
    if kafka.single_record_batches:
        config.update({"batch.num.messages": 1, "linger.ms": 0})
    return config


def client_config(kafka: KafkaSettings, bootstrap: str) -> dict[str, str | int]:
    """What every confluent-kafka consumer and admin client gets: where the cluster is, how to authenticate
    (``kafka.security``) and the raw ``kafka.client`` properties. The one way such a client is configured."""
    return {"bootstrap.servers": bootstrap, **librdkafka_security(kafka.security), **kafka.client}


class HttpSettings(BaseModel):
    #: e.g. http://proxy.corp:3128; applies to every outbound call rcaflow makes.
    proxy: str | None = None
    #: Hosts rcaflow may call (fnmatch patterns such as "*.aliyuncs.com"); empty means no restriction.
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Hosts reached directly even when a proxy is set (fnmatch patterns, e.g. "*.svc", "10.0.0.1"): the
    #: in-cluster Kubernetes API and Prometheus usually are.
    no_proxy: list[str] = Field(default_factory=list)
    #: Timeout of an outbound HTTP call, in seconds, where the caller sets none of its own.
    timeout_s: float = 30.0


class SlackTarget(BaseModel):
    """A Slack bot (``chat:write``) and the channel it posts to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Bot token (xoxb-...).
    token: SecretStr
    #: Channel the first responses go to (id or #name).
    channel: Annotated[str, Field(pattern=r"^[A-Za-z0-9#_.-]{1,80}$")]
    #: Slack Web API root (a proxy or a test server may stand in).
    api_base: str = "https://slack.com/api"
    #: ``link:<identity>`` approver -> their Slack user id: each gets their own approval link by direct message
    #: (the bot needs ``im:write``); never in the shared channel.
    approver_dms: dict[Annotated[str, Field(pattern=r"^link:[A-Za-z0-9._@+-]{1,128}$")],
                       Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,30}$")]] = Field(default_factory=dict)


class DingTalkTarget(BaseModel):
    """A DingTalk custom robot: its webhook URL (carries the access token) and its signing secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The robot's webhook URL; it carries the access token, so it is a secret.
    webhook_url: SecretStr
    #: The robot's signing secret (SEC...).
    secret: SecretStr


class TenantNotifySettings(BaseModel):
    """Where one tenant's first responses go; both channels may be set (each gets the message)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slack: SlackTarget | None = None
    dingtalk: DingTalkTarget | None = None


class NotifySettings(BaseModel):
    """Per-tenant notification channels. A tenant without an entry is not notified.

    Env (nested into Settings as ``notify``):
    ``RCAFLOW_NOTIFY__TENANTS__ACME__SLACK__TOKEN``, ``…__SLACK__CHANNEL``,
    ``RCAFLOW_NOTIFY__TENANTS__ACME__DINGTALK__WEBHOOK_URL``, ``…__DINGTALK__SECRET``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenants: dict[str, TenantNotifySettings] = Field(default_factory=dict)
    #: How long the worker remembers an incident's message (and an action's decision) after its last
    #: change; an older incident gets a new message instead of an update.
    keep_hours: Annotated[float, Field(gt=0)] = 24.0
    #: How often the worker forgets what is older than ``keep_hours``.
    prune_interval_s: Annotated[float, Field(gt=0)] = 300.0
    #: Where your copy of docs/runbooks/ is served (e.g. your Git server's folder URL); every first response
    #: links ``<this>/<class>.md``. Empty: the message names the repository path ``docs/runbooks/<class>.md``.
    runbook_base_url: str = ""


class LlmSettings(BaseModel):
    """The asynchronous LLM second opinion; on when an API key is configured (QWEN_API_KEY)."""

    #: Turn the LLM second opinion on or off; unset: on when an API key (QWEN_API_KEY) is configured.
    enabled: bool | None = None
    #: A name in ``executors.llm.provider.PROVIDERS`` ("openai_compat", "qwen", ...); adding a provider is one
    #: module and one entry there.
    provider: str = "openai_compat"
    #: The OpenAI-compatible endpoint (DashScope by default; a local vLLM, llama.cpp or Ollama server works
    #: too).
    base_url: str = "https://dashscope.aliyuncs.com/compatible-mode/v1"
    #: Model name sent to the endpoint.
    model: str = "qwen-plus"
    #: Seconds per attempt of one request (the client retries 429/5xx with backoff).
    timeout_s: float = 60.0
    #: Incidents analysed at once by one worker (the LLM is I/O-bound). Measured: 100 incidents with a
    #: 2 s model finish in ~8 s at these defaults (benchmarks/rca_bench.py); keep the per-tenant rate
    #: under the provider account's quota.
    concurrency: int = 64
    #: Requests of one tenant in flight at once.
    max_concurrency_per_tenant: int = 32
    #: Requests per second per tenant (token bucket).
    rate_per_tenant_per_s: float = 20.0
    #: Size of that token bucket: requests a tenant may send at once after a quiet spell.
    burst_per_tenant: float = 5.0
    #: How JSON is asked for first (json_schema, json_object or text); a server refusing it is asked the next.
    response_mode: Literal["json_schema", "json_object", "text"] = "json_schema"
    #: Longest answer, in tokens (a small local model with a small context needs less).
    max_tokens: Annotated[int, Field(ge=1)] = 2000
    #: Longest string the JSON schema lets the model write in any answer field (sent as maxLength; with
    #: schema_max_items, as maxItems). Unset: no limits sent, as some hosted servers reject the keywords. Set it
    #: for a local server that compiles the schema into a grammar (llama.cpp, vLLM): a small model then ends its
    #: JSON within max_tokens instead of being cut off mid-answer (docs/llm.md).
    schema_max_chars: Annotated[int, Field(ge=20, le=2000)] | None = None
    #: Longest list (evidence_plan, actions, rollback) the JSON schema allows; used with schema_max_chars.
    schema_max_items: Annotated[int, Field(ge=1, le=10)] = 3
    #: The model's evidence round (docs/llm.md): rounds of reads it may ask for by catalogue operation (0: off),
    #: reads in total, and seconds for all of them; runs only when evidence backends are configured.
    evidence_rounds: Annotated[int, Field(ge=0, le=3)] = 1
    #: Reads the model may ask for in its evidence round, in total.
    evidence_max_calls: Annotated[int, Field(ge=0, le=20)] = 5
    #: Seconds for all of those reads.
    evidence_budget_s: Annotated[float, Field(gt=0)] = 30.0


class MailSettings(BaseModel):
    """Where the mail templates come from: the bundled ones and the deployment's own folders or files."""

    #: Template YAML files or folders of them, loaded after the bundled ones (a template with a bundled
    #: template's id replaces it). Mount a ConfigMap here to add a customer layout without a release.
    templates: list[Path] = Field(default_factory=list)
    #: Whether the bundled templates are loaded at all (false: only ``templates``).
    bundled_templates: bool = True


class KubernetesClusterSettings(BaseModel):
    """A cluster named explicitly, instead of a kubeconfig or the pod's service account."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The API server, e.g. https://10.0.0.1:6443.
    server: str
    #: Bearer token of a service account (or token_file).
    token: SecretStr | None = None
    #: A token file read again every minute (a projected, rotating service-account token).
    token_file: Path | None = None
    #: PEM file of the API server's CA; unset: the system's trust store.
    ca_file: Path | None = None
    #: Client certificate (PEM) for certificate login, with key_file.
    cert_file: Path | None = None
    #: Client private key (PEM), with cert_file.
    key_file: Path | None = None
    #: Off only for a lab: skips verifying the API server's certificate.
    verify_tls: bool = True
    #: Seconds per API call.
    timeout_s: float = Field(default=10.0, gt=0)


class EvidenceSettings(BaseModel):
    """Where the read-only evidence tools look; a tool without a backend reports its steps as skipped."""

    #: Prometheus-compatible query API (Prometheus, VictoriaMetrics vmselect) of the PromQL evidence; unset:
    #: those steps are skipped.
    prometheus_url: str | None = None
    #: Elasticsearch holding the cluster's logs, for the log evidence; unset: those steps are skipped.
    elasticsearch_url: str | None = None
    #: Index pattern the log queries search.
    elasticsearch_index: str = "insight-es-k8s-logs-*"
    #: Login and CA of each backend (``…__ELASTICSEARCH_AUTH__PASSWORD`` / ``__API_KEY`` / ``__CA_FILE``, or mounted
    #: secret files ``evidence/elasticsearch_auth/password``); production Elasticsearch 8 requires one.
    elasticsearch_auth: BackendAuth = Field(default_factory=BackendAuth)
    prometheus_auth: BackendAuth = Field(default_factory=BackendAuth)
    #: Kubeconfig file for the read-only Kubernetes evidence (pods, events, logs).
    kubeconfig: Path | None = None
    #: Context in that kubeconfig; unset: its current context.
    kube_context: str | None = None
    #: Read the cluster rcaflow runs in, with the pod's service account.
    in_cluster: bool = False
    #: Explicit cluster settings (used when neither kubeconfig nor in_cluster is set).
    cluster: KubernetesClusterSettings | None = None
    #: Named targets of the network probe: host:port for dns/tcp, http(s) URLs for http; evidence names a
    #: target, never an address.
    netprobe_targets: dict[str, str] = Field(default_factory=dict)
    #: Seconds per evidence call.
    call_timeout_s: float = 10.0
    #: Seconds for all the evidence of one incident; steps not done by then are reported as skipped.
    budget_s: float = 30.0
    #: Evidence calls in flight at once for one incident.
    concurrency: int = 4

    @property
    def any_backend(self) -> bool:
        return bool(self.prometheus_url or self.elasticsearch_url or self.kubeconfig or self.in_cluster
                    or self.cluster or self.netprobe_targets)


class KbSettings(BaseModel):
    """The knowledge base (``rcaflow kb``, docs/knowledge-base.md): one Elasticsearch document per incident.

    Off while ``elasticsearch_url`` is unset: no consumer, and no similar incidents in prompts or messages.
    """

    #: Elasticsearch of the knowledge base; unset: the knowledge base is off.
    elasticsearch_url: str | None = None
    auth: BackendAuth = Field(default_factory=BackendAuth)
    #: Indices are ``<prefix>-<tenant>.<YYYY.MM>`` (month the incident opened); retention deletes whole months.
    index_prefix: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,40}$")] = "rcaflow-kb"
    #: Months of incidents kept: `rcaflow kb prune` deletes older monthly indices.
    retention_months: int = Field(default=12, ge=1, le=120)
    #: Replicas per index in the template (0 for a single-node cluster).
    replicas: int = Field(default=1, ge=0, le=5)
    #: Consumer group (``kafka.topic_prefix`` is put in front), apart from the worker's, so a slow KB never
    #: holds the pipeline up.
    group_id: str = "rcaflow-kb"
    #: Records per bulk request to Elasticsearch.
    batch_size: int = Field(default=200, ge=1, le=5000)
    #: Seconds per Elasticsearch request.
    request_timeout_s: float = 30.0
    #: Past resolved incidents of the same tenant shown to the LLM and in the first response.
    similar_k: int = Field(default=3, ge=0, le=10)
    #: The worker waits at most this long for them; a slow or failing KB only means no history is shown.
    similar_timeout_s: float = Field(default=2.0, gt=0, le=30)
    #: Port of `rcaflow kb run`'s Prometheus metrics; unset: none served.
    metrics_port: int | None = None
    #: Address those metrics listen on (0.0.0.0 in a container).
    metrics_host: str = "127.0.0.1"
    #: ``rcaflow kb analytics`` (docs/knowledge-base.md): its own consumer group and indices — per-incident facts
    #: ``<analytics_prefix>-facts-<tenant>.<YYYY.MM>`` and daily documents ``<analytics_prefix>-daily-<tenant>``
    #: behind the alias ``<analytics_prefix>-daily``, which ``rcaflow stats`` reads.
    analytics_prefix: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,40}$")] = "rcaflow-analytics"
    #: Consumer group of `rcaflow kb analytics` (``kafka.topic_prefix`` is put in front).
    analytics_group_id: str = "rcaflow-analytics"
    #: Port of `rcaflow kb analytics`' Prometheus metrics; unset: none served.
    analytics_metrics_port: int | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.elasticsearch_url)


class ApprovalSettings(BaseModel):
    """Who may approve what, and the secrets of the approval channels (a channel without its secret is off)."""

    #: tenant -> identities: "slack:<user id>", "dingtalk:<staff id>", "link:<identity>".
    approvers: dict[str, list[str]] = Field(default_factory=dict)
    #: Slack app's signing secret: verifies every Slack button click; Slack approvals are off without it.
    slack_signing_secret: SecretStr | None = None
    #: Refused when set alone: the robot's timestamp ``sign`` authenticates no payload (docs/approvals.md).
    dingtalk_app_secret: SecretStr | None = None
    #: DingTalk's encrypted event callback (all three, as registered with DingTalk): the token, the
    #: 43-character EncodingAESKey, and the app key (or corp id) the plaintext must end with.
    dingtalk_callback_token: SecretStr | None = None
    #: DingTalk's 43-character EncodingAESKey of that callback.
    dingtalk_aes_key: SecretStr | None = None
    #: The app key (or corp id) DingTalk's decrypted callbacks must end with.
    dingtalk_owner_key: str | None = None
    #: Signs the one-time approval links (at least 32 bytes); links are off without it.
    link_secret: SecretStr | None = None
    #: How long an approval link stays valid.
    link_ttl_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    #: Header an authenticating proxy sets with the approver's identity. Without it a link names its
    #: approver itself (one link per ``link:`` approver); a link naming nobody decides only actions the
    #: policy marks ``anonymous_approval: true``.
    link_identity_header: str | None = None
    #: Where approvers reach the API, for links in notifications (e.g. https://rcaflow.example.com).
    public_base_url: str | None = None
    #: API approver credentials: tenant -> approver name -> bearer token, for POST /actions/{id}/approve|reject
    #: and ``rcaflow approve``. The identity is ``api:<name>`` and must be listed in ``approvers`` of that tenant
    #: like any other (docs/incidents-api.md). Env/secret files only: ``RCAFLOW_APPROVALS__API_TOKENS__ACME__ALICE``.
    api_tokens: dict[str, dict[str, SecretStr]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _dingtalk_callback_complete(self) -> ApprovalSettings:
        """A half-configured DingTalk channel would vanish silently (404); say what is missing instead."""
        trio = {"dingtalk_callback_token": self.dingtalk_callback_token, "dingtalk_aes_key": self.dingtalk_aes_key,
                "dingtalk_owner_key": self.dingtalk_owner_key}
        missing = [name for name, value in trio.items() if not value]
        if self.dingtalk_app_secret is not None and missing:
            raise ValueError("dingtalk_app_secret no longer authenticates DingTalk decisions (its sign covers only "
                             "the timestamp); configure DingTalk's encrypted event callback: "
                             + ", ".join(missing))
        if 0 < len(missing) < len(trio):
            raise ValueError("DingTalk's encrypted event callback needs all of dingtalk_callback_token, "
                             f"dingtalk_aes_key and dingtalk_owner_key; missing {', '.join(missing)}")
        if self.dingtalk_aes_key is not None and len(self.dingtalk_aes_key.get_secret_value()) != 43:
            raise ValueError("dingtalk_aes_key must be DingTalk's 43-character EncodingAESKey")
        return self


_Pattern = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=253)]


class TenantLlmSettings(BaseModel):
    """One tenant's own LLM limits; an unset field uses the ``llm.*_per_tenant`` value."""

    model_config = ConfigDict(extra="forbid")

    #: Requests of this tenant in flight at once; unset: ``llm.max_concurrency_per_tenant``.
    max_concurrency: Annotated[int, Field(ge=1)] | None = None
    #: Requests per second of this tenant (token bucket); unset: ``llm.rate_per_tenant_per_s``.
    rate_per_s: Annotated[float, Field(gt=0)] | None = None
    #: Size of this tenant's token bucket; unset: ``llm.burst_per_tenant``.
    burst: Annotated[float, Field(ge=1)] | None = None
    #: LLM tokens (prompt + answer) this tenant may spend per rolling hour; past it the tenant's incidents keep
    #: the policy triage (no second opinion) until the hour drains. Unset: no budget.
    tokens_per_hour: Annotated[int, Field(ge=1)] | None = None


class TenantEvidenceSettings(BaseModel):
    """One tenant's own evidence backends; an unset backend is the global ``evidence.*`` one.

    A tenant's own URL gets the tenant's own login (``prometheus_auth`` / ``elasticsearch_auth`` here), never the
    global one, so one tenant's credentials are never sent to another tenant's backend. The host allow-list, proxy
    and timeouts of ``http`` and ``evidence`` apply as to every backend.
    """

    model_config = ConfigDict(extra="forbid")

    #: The tenant's Prometheus-compatible query API, e.g. a vmselect tenant path
    #: ``http://vmselect:8481/select/<accountID>/prometheus``.
    prometheus_url: str | None = None
    #: Login to that URL (env ``RCAFLOW_TENANTS__<T>__EVIDENCE__PROMETHEUS_AUTH__BEARER_TOKEN`` or secret files).
    prometheus_auth: BackendAuth = Field(default_factory=BackendAuth)
    #: The tenant's Elasticsearch with its cluster logs.
    elasticsearch_url: str | None = None
    #: Index pattern of the tenant's logs; unset: ``evidence.elasticsearch_index``.
    elasticsearch_index: str | None = None
    #: Login to that Elasticsearch.
    elasticsearch_auth: BackendAuth = Field(default_factory=BackendAuth)
    #: Kubeconfig of the tenant's cluster; any of kubeconfig/cluster replaces the global Kubernetes source.
    kubeconfig: Path | None = None
    #: Context in that kubeconfig.
    kube_context: str | None = None
    #: The tenant's cluster named explicitly (server, token, CA).
    cluster: KubernetesClusterSettings | None = None

    @property
    def any_backend(self) -> bool:
        return bool(self.prometheus_url or self.elasticsearch_url or self.kubeconfig or self.cluster)


class TenantIngestSettings(BaseModel):
    """One tenant's ingest quota; over it, HTTP senders get 429 + Retry-After and mails wait in the mailbox."""

    model_config = ConfigDict(extra="forbid")

    #: Alerts (one per webhook alert, event or mail) this tenant may send per minute on average; unset: no quota.
    alerts_per_minute: Annotated[float, Field(gt=0)] | None = None
    #: Alerts it may send at once after a quiet spell; unset: ten seconds' worth (at least 1).
    burst: Annotated[float, Field(ge=1)] | None = None
    #: This tenant's weight in the fair shares of ``ingest.budget_alerts_per_minute`` (2: twice a tenant of 1).
    weight: float = Field(default=1.0, gt=0)


class IngestSettings(BaseModel):
    """The intake budget: what one intake process admits for all tenants together (docs/tenants.md)."""

    model_config = ConfigDict(extra="forbid")

    #: Alerts per minute this intake process (one ``rcaflow api`` replica, one ``rcaflow ingest imap``; with
    #: ``replicas``, all replicas together) admits for all tenants together; size the processes' sum below the
    #: workers' measured capacity. When it runs
    #: short, a tenant above its fair share (by ``tenants.<name>.ingest.weight`` among the tenants active in the
    #: last window) is deferred (429 ``over_fair_share``; mails wait), the others are admitted. Unset: none.
    budget_alerts_per_minute: Annotated[float, Field(gt=0)] | None = None
    #: Alerts all tenants together may send at once after a quiet spell; also the fairness window (burst ÷
    #: rate). Unset: five seconds' worth (at least 1).
    budget_burst: Annotated[float, Field(ge=1)] | None = None
    #: Replicas of this intake process sharing the budget (the API Deployment's replica count): each admits
    #: ``budget_alerts_per_minute`` and ``budget_burst`` ÷ this (burst at least 1), so the replicas together
    #: admit the budget. Uneven load balancing admits less than the total. Tenant quotas are not divided, and
    #: ``rcaflow ingest imap`` (one per mailbox) ignores it.
    replicas: int = Field(default=1, ge=1)


class TenantSettings(BaseModel):
    """One tenant: its API token and its scope (policies.tenant_scope; docs/policies.md "Tenant scope")."""

    #: Bearer token for POST /events and /webhook; None means no token configured for the tenant.
    token: SecretStr | None = None
    #: Cluster label value -> the name the tenant's messages show for it.
    cluster_names: dict[str, str] = Field(default_factory=dict)
    #: Namespaces (fnmatch patterns) the tenant's actions may change and its evidence may read; empty: the
    #: tenant is read-only (no action is approved or sent for approval). "*": every namespace, and
    #: cluster-wide actions (http.reload, a silence without a namespace).
    namespaces: list[_Pattern] = Field(default_factory=list)
    #: Clusters (fnmatch patterns on the alert's cluster label) the tenant's alerts may name; empty: any.
    clusters: list[_Pattern] = Field(default_factory=list)
    #: Mail From addresses (fnmatch patterns, case-insensitive, e.g. "*@alerts.acme.com") that may speak for
    #: the tenant; a mail from anyone else is dead-lettered. Empty: any sender (one tenant only).
    senders: list[_Pattern] = Field(default_factory=list)
    #: YAML file that tightens the remediation policy for this tenant only (disable classes or actions, raise
    #: risk, require approval, narrow parameters, harder thresholds; docs/tenants.md); a loosening one is refused.
    policy_overlay: Path | None = None
    #: This tenant's own LLM concurrency, rate and token budget (docs/tenants.md).
    llm: TenantLlmSettings = Field(default_factory=TenantLlmSettings)
    #: This tenant's ingest quota (docs/tenants.md); unset: none.
    ingest: TenantIngestSettings = Field(default_factory=TenantIngestSettings)
    #: This tenant's own Prometheus/VictoriaMetrics, Elasticsearch and Kubernetes (docs/tenants.md); unset: global.
    evidence: TenantEvidenceSettings = Field(default_factory=TenantEvidenceSettings)


def tenant_scope_problems(tenants: dict[str, TenantSettings]) -> list[str]:
    """What makes a set of tenants unsafe to share one deployment: with two or more, a tenant without
    senders would accept anyone's mail and one without namespaces would read every tenant's pods."""
    if len(tenants) < 2:
        return []
    problems = []
    for name, tenant in sorted(tenants.items()):
        missing = [field for field in ("senders", "namespaces") if not getattr(tenant, field)]
        if missing:
            problems.append(f"tenant {name} needs {' and '.join(missing)} because more than one tenant is "
                            "configured")
    return problems


class ApiSettings(BaseModel):
    #: Address the API listens on (0.0.0.0 in a container; loopback on a laptop).
    host: str = "127.0.0.1"
    #: Port of the API.
    port: int = 8080
    #: Tenant of a request that names none (a single-tenant deployment).
    default_tenant: str = "default"
    #: Background loops (actions feed, Graph maintenance) restart after a failure with backoff doubling
    #: up to this; /healthz turns 503 when one stays down longer than ``unhealthy_after_s``.
    loop_backoff_max_s: float = Field(default=30.0, gt=0)
    #: Seconds a background loop may stay down before /healthz turns 503.
    unhealthy_after_s: float = Field(default=300.0, gt=0)
    #: How long POST /tools waits for the executor's outcome of a write before answering 202 + where to follow.
    tools_wait_s: float = Field(default=20.0, gt=0)
    #: The incident view (GET /incidents, /actions): incidents with no record for this long are forgotten,
    #: and at most ``incidents_max`` are kept (the oldest go first); docs/incidents-api.md.
    incidents_keep_hours: float = Field(default=72.0, gt=0)
    #: Most incidents the view keeps; past it the least recently active tenth is dropped.
    incidents_max: int = Field(default=20_000, ge=100)

    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


class CliSettings(BaseModel):
    """The API client commands (``rcaflow incidents``, ``incident``, ``approve``, ``reject``)."""

    #: Base URL of ``rcaflow api``.
    api_url: str = "http://127.0.0.1:8080"
    #: A tenant token (reads) or an API approver token (reads and decides); env ``RCAFLOW_CLI__TOKEN``.
    token: SecretStr | None = None
    #: Seconds per request to the API.
    timeout_s: float = Field(default=10.0, gt=0)


class WorkerSettings(BaseModel):
    #: The Faust app id: consumer group and prefix of the worker's internal topics (after
    #: ``kafka.topic_prefix``).
    app_id: str = "rcaflow"
    #: Where the worker's tables live: memory:// (rebuilt from their changelog topics at start) or
    #: rocksdb://.
    store: str = "memory://"
    #: The worker's local state (table stores).
    data_dir: Path = STATE_HOME / "worker"
    #: Port of the worker's /metrics, /readyz and /healthz (0: not served).
    metrics_port: int = 9465
    #: 0.0.0.0 in a container so Prometheus can scrape it; loopback on a laptop.
    metrics_host: str = "127.0.0.1"
    #: Partitions of the topics rcaflow creates (the worker's parallelism).
    partitions: int = 3
    #: How often awaiting approvals are checked against their expiry.
    expiry_check_seconds: float = 5.0
    #: How long a dedup-state row outlives its dedup window (an action-cooldowns entry its cooldown, an
    #: incident-groups row its groups) before the prune tick (``notify.prune_interval_s``) deletes it: a record
    #: re-delivered after a restart still finds what it found the first time.
    prune_margin_s: float = Field(default=3600.0, gt=0)
    #: How long after its last alert an incident nobody resolved is forgotten: a "resolved" mail after that is
    #: ignored, a firing one opens a new incident.
    open_incident_keep_hours: float = Field(default=168.0, gt=0)
    #: After how long a record held in a transient retry (broker, registry, LLM down) turns the worker's /readyz
    #: (on metrics_port) 503, naming the stage; the record keeps retrying either way.
    stuck_after_s: float = Field(default=300.0, gt=0)
    #: How long the worker's producer waits for a send's metadata or acks before the send fails (and is retried
    #: with backoff, in the log); a table row not acknowledged within it is sent again.
    producer_request_timeout_s: float = Field(default=40.0, gt=0)
    #: Inputs the audit, dedup, correlate and decide agents finish per round at most (a round waits for its
    #: outputs' acks, then its table rows' acks, together). Larger: fewer acks waited for per input under a
    #: backlog, but more memory and more work done again after a crash; smaller: less latency per input.
    round_size: int = Field(default=512, ge=1, le=65_536)
    #: Inputs each of those agents holds (taken, not yet acked) before it stops taking more: the queue behind a
    #: slow round, kept in memory and re-delivered after a crash. At least ``round_size``.
    max_held: int = Field(default=2048, ge=1, le=262_144)

    @model_validator(mode="after")
    def _rounds_fit_the_queue(self) -> WorkerSettings:
        """A round is taken from the held inputs, so it can never be larger than what may be held."""
        if self.max_held < self.round_size:
            raise ValueError(f"max_held ({self.max_held}) must be at least round_size ({self.round_size})")
        return self


class ExecutorSettings(BaseModel):
    #: Real side effects need an explicit opt-in per deployment.
    dry_run: bool = True
    #: Port of the executor's /metrics (0: not served).
    metrics_port: int = 9466
    #: Address that port listens on (0.0.0.0 in a container).
    metrics_host: str = "127.0.0.1"
    #: Consumer group of the executor on the actions topic (``kafka.topic_prefix`` is put in front).
    group_id: str = "rcaflow-executor"
    #: The cluster the k8s actions act on (kubeconfig file, or the pod's service account).
    kubeconfig: Path | None = None
    #: Context in that kubeconfig; unset: its current context.
    kube_context: str | None = None
    #: Act on the cluster rcaflow runs in, with the pod's service account.
    in_cluster: bool = False
    #: Explicit cluster settings (used when neither kubeconfig nor in_cluster is set).
    cluster: KubernetesClusterSettings | None = None
    #: Named reload endpoints for http.reload (e.g. vmalert: http://vmalert.insight-system:8880); actions
    #: name the endpoint, never a URL.
    #: A plain URL, or {"url": ..., "kind": "vmalert"|"prometheus"|"alertmanager"} to confirm each reload
    #: through the server's own reload-success metric.
    reload_endpoints: dict[str, str | ReloadTarget] = Field(default_factory=dict)
    #: Alertmanager root URL for alertmanager.silence.
    alertmanager_url: str | None = None
    #: After a real restart or scale, how long to wait for the rollout to finish (kubectl's default
    #: progressDeadlineSeconds is 600) before the action counts as failed and, with the policy's
    #: on_failure: undo, is rolled back; and how often to look.
    confirm_within_s: float = Field(default=300.0, gt=0)
    #: How often the rollout is looked at meanwhile.
    confirm_every_s: float = Field(default=2.0, gt=0)
    #: Actions run at once; offsets are still committed in order.
    concurrency: int = Field(default=8, ge=1, le=64)
    #: On SIGTERM, how long running actions get to finish; the rest are recorded as interrupted (failed).
    stop_grace_s: float = Field(default=20.0, ge=0)
    #: How long a record for one key may keep failing for a transient reason, while a fresh client finds a
    #: leader for every partition of the actions topic, before the executor replaces its Kafka producer
    #: (a librdkafka producer can stay stuck after a broker restart: confluentinc/librdkafka#5430). Shorter:
    #: actions wait less behind such a producer; longer: a slow leader election is less likely to cost a new
    #: producer. At most an hour.
    producer_renew_after_s: float = Field(default=60.0, gt=0, le=3600)


#: Shortest decision key accepted: HMAC-SHA256 gains nothing from more, and a short one can be guessed.
DECISION_KEY_MIN_BYTES = 32


class SecuritySettings(BaseModel):
    """The decision key the worker signs approved actions with and the executor verifies them with.

    Env ``RCAFLOW_SECURITY__DECISION_KEY`` (or the secret file ``security/decision_key``). To rotate:
    configure the new key and move the old one to ``decision_previous_keys`` (JSON list in
    ``RCAFLOW_SECURITY__DECISION_PREVIOUS_KEYS``) until every action signed with it is past its not-after.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Signs the actions the worker approves; the executor runs only what verifies with it (at least 32
    #: bytes; worker, executor and `rcaflow rollback`).
    decision_key: SecretStr | None = None
    #: Former decision keys still accepted while a rotation is under way.
    decision_previous_keys: list[SecretStr] = Field(default_factory=list)
    #: How long an action the policy approved by itself may wait for the executor before it is refused as
    #: expired (a human approval stays valid for the action's approval TTL instead).
    auto_approval_valid_minutes: int = Field(default=60, ge=1, le=24 * 60)
    #: The key the API signs the human decisions it verified with and the worker checks them with (API and
    #: worker only; not the decision key, so the API cannot authorise a run). Env
    #: ``RCAFLOW_SECURITY__APPROVAL_KEY`` or the secret file ``security/approval_key``; rotate like the decision
    #: key, through ``approval_previous_keys``.
    approval_key: SecretStr | None = None
    #: Former approval keys still accepted while a rotation is under way.
    approval_previous_keys: list[SecretStr] = Field(default_factory=list)

    @field_validator("decision_key", "decision_previous_keys", "approval_key", "approval_previous_keys")
    @classmethod
    def _long_enough(cls, value: SecretStr | list[SecretStr] | None) -> SecretStr | list[SecretStr] | None:
        keys = value if isinstance(value, list) else [value] if value is not None else []
        if any(len(key.get_secret_value().encode("utf-8")) < DECISION_KEY_MIN_BYTES for key in keys):
            raise ValueError(f"a decision or approval key needs at least {DECISION_KEY_MIN_BYTES} bytes")
        return value


class SettingsOrigin(BaseModel):
    """Where a Settings was read from besides the environment, so the processes ``rcaflow run`` starts read
    the same file and secrets dir (streams/wiring/supervisor.py); None for settings built in code."""

    model_config = ConfigDict(frozen=True)

    config_file: Path | None = None
    secrets_dir: Path | None = None


class Settings(BaseSettings):
    """All of rcaflow's configuration. Env: ``RCAFLOW_`` prefix, ``__`` for nesting."""

    model_config = SettingsConfigDict(
        env_prefix="RCAFLOW_",
        env_nested_delimiter="__",
        secrets_dir=None,
        extra="ignore",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    #: Confluent-compatible Schema Registry; unset: records in Avro single-object encoding.
    schema_registry_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SCHEMA_REGISTRY_URL", "RCAFLOW_SCHEMA_REGISTRY_URL")
    )
    #: The cluster, host:port[,host:port...]; wins over kafka.bootstrap_servers. Neither set: `rcaflow run`
    #: starts the embedded broker.
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "RCAFLOW_KAFKA_BOOTSTRAP_SERVERS"),
    )
    #: API key of the LLM endpoint; with it the LLM second opinion is on (unless llm.enabled is false).
    qwen_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("QWEN_API_KEY", "RCAFLOW_LLM_API_KEY")
    )
    llm: LlmSettings = Field(default_factory=LlmSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    #: The incident knowledge base in Elasticsearch (off unless kb.elasticsearch_url is set).
    kb: KbSettings = Field(default_factory=KbSettings)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    #: Per-tenant Slack / DingTalk targets for first-response notifications.
    notify: NotifySettings = Field(default_factory=NotifySettings)
    #: Microsoft Graph (Exchange Online) mail ingest, served by the API process when set.
    msgraph: MsgraphConfig | None = None
    #: The remediation policy file; unset: the bundled policies/remediation_policies.yaml.
    policies_file: Path | None = None
    tenants: dict[str, TenantSettings] = Field(default_factory=lambda: {"default": TenantSettings()})
    #: The intake budget shared fairly by the tenants (per-tenant quotas: ``tenants.<name>.ingest``).
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    #: Where ``rcaflow incidents/incident/approve/reject`` reach the API, and the token they present.
    cli: CliSettings = Field(default_factory=CliSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    #: The decision key that signs approved actions (worker) and verifies them (executor).
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    #: IMAP mailboxes by name; `rcaflow ingest imap --mailbox NAME` runs one of them.
    mailboxes: dict[str, ImapConfig] = Field(default_factory=dict)
    #: DEBUG, INFO, WARNING or ERROR (``--log-level`` wins).
    log_level: str = "INFO"
    #: One JSON object per log line, for a log shipper.
    log_json: bool = False
    #: Set by :func:`load_settings`; kept by ``model_copy``.
    _origin: SettingsOrigin | None = PrivateAttr(default=None)

    @property
    def origin(self) -> SettingsOrigin | None:
        """The file and secrets dir these settings were loaded from (None: built in code)."""
        return self._origin

    @field_validator("tenants")
    @classmethod
    def _tenants_are_scoped(cls, tenants: dict[str, TenantSettings]) -> dict[str, TenantSettings]:
        problems = tenant_scope_problems(tenants)
        if OTHER_TENANT in tenants:  # the metrics' label for every tenant that is not configured
            problems.append(f"a tenant may not be named {OTHER_TENANT!r}: metrics use it for unknown tenants")
        if problems:
            raise ValueError("; ".join(problems))
        return tenants

    @property
    def llm_enabled(self) -> bool:
        if self.llm.enabled is not None:
            return self.llm.enabled
        return self.qwen_api_key is not None and bool(self.qwen_api_key.get_secret_value())

    @property
    def bootstrap(self) -> str | None:
        """The configured cluster, if any; None means "start the embedded broker"."""
        return self.kafka_bootstrap_servers or self.kafka.bootstrap_servers

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if not cls.model_config.get("secrets_dir"):
            return (env_settings, init_settings, file_secret_settings)
        # Secret files nest like env vars: a subdirectory (approvals/link_secret) or SECRET_NESTING in the name.
        subdirs = NestedSecretsSettingsSource(file_secret_settings, secrets_prefix="", secrets_nested_subdir=True)
        flat = NestedSecretsSettingsSource(file_secret_settings, secrets_prefix="",
                                           secrets_nested_delimiter=SECRET_NESTING)
        return (env_settings, init_settings, subdirs, flat)


def load_settings(config_file: Path | None = None, secrets_dir: Path | None = None) -> Settings:
    """Environment wins over the YAML file; secrets may come from mounted files.

    Every way the configuration can be wrong ends as one :class:`ConfigurationError`
    naming the file or the field, so the CLI can print one line; no value is echoed,
    since any of them may be a secret.
    """
    init: dict[str, Any] = {}
    if config_file is not None:
        init = _read_yaml(config_file)
    # A typo must not leave a setting at its default in silence: one line per unknown key, with the nearest name.
    problems = [f"{config_file}: {problem}" for problem in unknown_in_data(Settings, init)]
    problems += unknown_in_environment(Settings, os.environ)
    if problems:
        raise ConfigurationError("\n".join(problems))
    try:
        settings = _with_secrets_dir(secrets_dir)(**init) if secrets_dir is not None else Settings(**init)
    except ValidationError as exc:
        where = f" (environment or {config_file})" if config_file is not None else " (environment)"
        raise ConfigurationError(f"invalid settings{where}: {_summary(exc)}") from exc
    except SettingsError as exc:  # a complex value (JSON in an env var or secret file) that does not parse
        raise ConfigurationError(f"invalid settings: {exc}") from exc
    settings._origin = SettingsOrigin(config_file=config_file.resolve() if config_file is not None else None,
                                      secrets_dir=secrets_dir.resolve() if secrets_dir is not None else None)
    return settings


def _read_yaml(config_file: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigurationError(f"{config_file}: cannot read the settings file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{config_file}: the settings file is not UTF-8 (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        # str(exc) quotes the offending line, which may hold a secret: keep only the problem and the position.
        # The problem itself can quote the value too ("found undefined alias 'k3y...'" for a password that
        # starts with '*'), so quoted text in it is blanked.
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = _QUOTED.sub("'…'", getattr(exc, "problem", None) or type(exc).__name__)
        raise ConfigurationError(f"{config_file}: not valid YAML{at}: {problem}") from exc
    if not isinstance(loaded, dict):
        raise ConfigurationError(f"{config_file}: top level must be a mapping, not a {type(loaded).__name__}")
    return loaded


def _summary(exc: ValidationError, limit: int = 5) -> str:
    """``api.port: Input should be a valid integer; ...``: field paths and pydantic's words, never the input."""
    problems = [
        f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    ]
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def _with_secrets_dir(secrets_dir: Path) -> type[Settings]:
    """Secret files name a setting the way env vars do, without the prefix.

    ``qwen_api_key`` (top level), ``approvals__link_secret`` (a Kubernetes Secret key cannot hold ``/``) and
    ``approvals/link_secret`` (a projected volume's ``items.path``) all work. A path under a known section that
    names no setting is refused rather than silently ignored: a typo in a mounted secret must not leave a
    channel unsigned.
    """
    _refuse_unknown_secret_paths(secrets_dir)

    class _Settings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "secrets_dir": str(secrets_dir)})

    return _Settings


#: Nesting inside one secret file name, as in the environment: ``approvals__link_secret``.
SECRET_NESTING = "__"
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _refuse_unknown_secret_paths(secrets_dir: Path) -> None:
    """Every nested secret file must land on a field; top-level files that name nothing are left alone.

    A mounted Secret often carries other files (a CA bundle, a kubeconfig); only a name that says it is nested
    (a subdirectory or ``__``) and misses is a mistake worth stopping for.
    """
    for path in sorted(secrets_dir.rglob("*")):
        relative = path.relative_to(secrets_dir)
        if path.is_dir() or any(part.startswith(".") for part in relative.parts):
            continue
        parts = [piece for part in relative.parts for piece in part.split(SECRET_NESTING)]
        if len(parts) < 2:
            continue
        problem = _field_path_problem(Settings, [p.lower() for p in parts])
        if problem is not None:
            raise ConfigurationError(
                f"secrets dir {secrets_dir}: {relative} does not name a setting ({problem}); nest with "
                f"subdirectories or '{SECRET_NESTING}', e.g. approvals/link_secret or approvals__link_secret")


def _field_path_problem(model: type[BaseModel], parts: list[str]) -> str | None:
    """Why ``parts`` does not lead to one field of ``model`` (None when it does)."""
    annotation: Any = model
    walked: list[str] = []
    for part in parts:
        annotation = _unwrap_optional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names = {name.lower(): name for name in annotation.model_fields}
            if part not in names:
                where = ".".join(walked) or "the top level"
                return f"{where} has no {part!r}; it has {', '.join(sorted(names))}"
            annotation = annotation.model_fields[names[part]].annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return f"{'.'.join(walked)} is a single value, not a section"
        walked.append(part)
    return None


def _unwrap_optional(annotation: Any) -> Any:
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        return args[0]
    return annotation


#: ``kafka.client`` keys whose values are credentials (librdkafka names).
_CREDENTIAL_KEYS = ("password", "secret", "token", "sasl.oauthbearer.config", "ssl.key.pem")


def secret_values(settings: BaseModel) -> list[str]:
    """Every secret the configuration holds, so the log formatter can blank them wherever they turn up."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(settings)
    if isinstance(settings, Settings):
        found += [v for k, v in settings.kafka.client.items() if any(word in k.lower() for word in _CREDENTIAL_KEYS)]
    return [value for value in found if value]
