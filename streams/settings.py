"""The one place rcaflow reads its configuration (environment, secrets dir, optional YAML).

Built once in the composition root and handed down as sections; no other
module reads ``os.environ`` (STYLE.md §6).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from executors.tools.reload_targets import ReloadTarget
from producers.imap.config import ImapConfig
from producers.msgraph.config import MsgraphConfig
from streams.errors import ConfigurationError

STATE_HOME = Path.home() / ".local" / "state" / "rcaflow"
CACHE_HOME = Path.home() / ".cache" / "rcaflow"


class EmbeddedBrokerSettings(BaseModel):
    prefer: Literal["auto", "kafka", "tansu"] = "auto"
    data_dir: Path = STATE_HOME / "broker"
    cache_dir: Path = CACHE_HOME
    port: int | None = None


class KafkaSettings(BaseModel):
    bootstrap_servers: str | None = None
    topic_prefix: str = ""
    #: Short session/heartbeat/commit timings (MEASURED.md): right for one machine and tests;
    #: on a shared production cluster set to false to use the clients' defaults.
    fast_rebalance: bool = True
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
    config: dict[str, str | int] = dict(kafka.client)
    if kafka.single_record_batches:
        config.update({"batch.num.messages": 1, "linger.ms": 0})
    return config


class HttpSettings(BaseModel):
    #: e.g. http://proxy.corp:3128; applies to every outbound call rcaflow makes.
    proxy: str | None = None
    #: Hosts rcaflow may call (fnmatch patterns such as "*.aliyuncs.com"); empty means no restriction.
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Hosts reached directly even when a proxy is set (fnmatch patterns, e.g. "*.svc", "10.0.0.1"): the
    #: in-cluster Kubernetes API and Prometheus usually are.
    no_proxy: list[str] = Field(default_factory=list)
    timeout_s: float = 30.0


class SlackTarget(BaseModel):
    """A Slack bot (``chat:write``) and the channel it posts to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr
    channel: Annotated[str, Field(pattern=r"^[A-Za-z0-9#_.-]{1,80}$")]
    api_base: str = "https://slack.com/api"


class DingTalkTarget(BaseModel):
    """A DingTalk custom robot: its webhook URL (carries the access token) and its signing secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_url: SecretStr
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


class LlmSettings(BaseModel):
    """The asynchronous LLM second opinion; on when an API key is configured (QWEN_API_KEY)."""

    enabled: bool | None = None
    #: A name in ``executors.llm.provider.PROVIDERS`` ("openai_compat", "qwen", ...); adding a provider is one
    #: module and one entry there.
    provider: str = "openai_compat"
    base_url: str = "https://dashscope.aliyuncs.com/compatible-mode/v1"
    model: str = "qwen-plus"
    timeout_s: float = 60.0
    #: Incidents analysed at once by one worker (the LLM is I/O-bound). Measured: 100 incidents with a
    #: 2 s model finish in ~8 s at these defaults (benchmarks/rca_bench.py); keep the per-tenant rate
    #: under the provider account's quota.
    concurrency: int = 64
    max_concurrency_per_tenant: int = 32
    rate_per_tenant_per_s: float = 20.0
    burst_per_tenant: float = 5.0


class MailSettings(BaseModel):
    """Where the mail templates come from: the bundled ones and the deployment's own folders or files."""

    #: Template YAML files or folders of them, loaded after the bundled ones (a template with a bundled
    #: template's id replaces it). Mount a ConfigMap here to add a customer layout without a release.
    templates: list[Path] = Field(default_factory=list)
    #: Whether the bundled templates are loaded at all (false: only ``templates``).
    bundled_templates: bool = True


class EvidenceSettings(BaseModel):
    """Where the read-only evidence tools look; a tool without a backend reports its steps as skipped."""

    prometheus_url: str | None = None
    elasticsearch_url: str | None = None
    elasticsearch_index: str = "insight-es-k8s-logs-*"
    kubeconfig: Path | None = None
    kube_context: str | None = None
    in_cluster: bool = False
    netprobe_targets: dict[str, str] = Field(default_factory=dict)
    call_timeout_s: float = 10.0
    budget_s: float = 30.0
    concurrency: int = 4

    @property
    def any_backend(self) -> bool:
        return bool(self.prometheus_url or self.elasticsearch_url or self.kubeconfig or self.in_cluster
                    or self.netprobe_targets)


class ApprovalSettings(BaseModel):
    """Who may approve what, and the secrets of the approval channels (a channel without its secret is off)."""

    #: tenant -> identities: "slack:<user id>", "dingtalk:<staff id>", "link:<identity>".
    approvers: dict[str, list[str]] = Field(default_factory=dict)
    slack_signing_secret: SecretStr | None = None
    dingtalk_app_secret: SecretStr | None = None
    #: Signs the one-time approval links (at least 32 bytes); links are off without it.
    link_secret: SecretStr | None = None
    link_ttl_minutes: int = 60
    #: Header an authenticating proxy sets with the approver's identity; without it a link is a bearer credential.
    link_identity_header: str | None = None
    #: Where approvers reach the API, for links in notifications (e.g. https://rcaflow.example.com).
    public_base_url: str | None = None


class TenantSettings(BaseModel):
    #: Bearer token for POST /events and /webhook; None means no token configured for the tenant.
    token: SecretStr | None = None
    cluster_names: dict[str, str] = Field(default_factory=dict)
    #: Namespaces (fnmatch patterns) this tenant's token may name on /tools; empty: unrestricted.
    namespaces: list[str] = Field(default_factory=list)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    default_tenant: str = "default"

    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


class WorkerSettings(BaseModel):
    app_id: str = "rcaflow"
    store: str = "memory://"
    data_dir: Path = STATE_HOME / "worker"
    metrics_port: int = 9465
    #: 0.0.0.0 in a container so Prometheus can scrape it; loopback on a laptop.
    metrics_host: str = "127.0.0.1"
    partitions: int = 3
    #: How often awaiting approvals are checked against their expiry.
    expiry_check_seconds: float = 5.0


class ExecutorSettings(BaseModel):
    #: Real side effects need an explicit opt-in per deployment.
    dry_run: bool = True
    metrics_port: int = 9466
    metrics_host: str = "127.0.0.1"
    group_id: str = "rcaflow-executor"
    #: The cluster the k8s actions act on (kubeconfig file, or the pod's service account).
    kubeconfig: Path | None = None
    kube_context: str | None = None
    in_cluster: bool = False
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
    confirm_every_s: float = Field(default=2.0, gt=0)
    #: Actions run at once; offsets are still committed in order.
    concurrency: int = Field(default=8, ge=1, le=64)
    #: On SIGTERM, how long running actions get to finish; the rest are recorded as interrupted (failed).
    stop_grace_s: float = Field(default=20.0, ge=0)


class Settings(BaseSettings):
    """All of rcaflow's configuration. Env: ``RCAFLOW_`` prefix, ``__`` for nesting."""

    model_config = SettingsConfigDict(
        env_prefix="RCAFLOW_",
        env_nested_delimiter="__",
        secrets_dir=None,
        extra="ignore",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    schema_registry_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SCHEMA_REGISTRY_URL", "RCAFLOW_SCHEMA_REGISTRY_URL")
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "RCAFLOW_KAFKA_BOOTSTRAP_SERVERS"),
    )
    qwen_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("QWEN_API_KEY", "RCAFLOW_LLM_API_KEY")
    )
    llm: LlmSettings = Field(default_factory=LlmSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    #: Per-tenant Slack / DingTalk targets for first-response notifications.
    notify: NotifySettings = Field(default_factory=NotifySettings)
    #: Microsoft Graph (Exchange Online) mail ingest, served by the API process when set.
    msgraph: MsgraphConfig | None = None
    policies_file: Path | None = None
    tenants: dict[str, TenantSettings] = Field(default_factory=lambda: {"default": TenantSettings()})
    api: ApiSettings = Field(default_factory=ApiSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    #: IMAP mailboxes by name; `rcaflow ingest imap --mailbox NAME` runs one of them.
    mailboxes: dict[str, ImapConfig] = Field(default_factory=dict)
    log_level: str = "INFO"
    log_json: bool = False

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
        return (env_settings, init_settings, file_secret_settings)


def load_settings(config_file: Path | None = None, secrets_dir: Path | None = None) -> Settings:
    """Environment wins over the YAML file; secrets may come from mounted files.

    Every way the configuration can be wrong ends as one :class:`ConfigurationError`
    naming the file or the field, so the CLI can print one line; no value is echoed,
    since any of them may be a secret.
    """
    init: dict[str, Any] = {}
    if config_file is not None:
        init = _read_yaml(config_file)
    try:
        if secrets_dir is not None:
            return _with_secrets_dir(secrets_dir)(**init)
        return Settings(**init)
    except ValidationError as exc:
        where = f" (environment or {config_file})" if config_file is not None else " (environment)"
        raise ConfigurationError(f"invalid settings{where}: {_summary(exc)}") from exc
    except SettingsError as exc:  # a complex value (JSON in an env var or secret file) that does not parse
        raise ConfigurationError(f"invalid settings: {exc}") from exc


def _read_yaml(config_file: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigurationError(f"{config_file}: cannot read the settings file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{config_file}: the settings file is not UTF-8 (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        # str(exc) quotes the offending line, which may hold a secret: keep only the problem and the position.
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
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
    class _Settings(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "secrets_dir": str(secrets_dir)})

    return _Settings
