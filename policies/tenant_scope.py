"""What one tenant may read, change and send: the namespaces, clusters and mail senders that are its own.

The backends (Kubernetes, Elasticsearch, the executor's cluster) are shared by the
whole deployment, and an alert mail is untrusted text that may name any namespace;
this is the one place that says whether a target belongs to the tenant whose mail
named it. Pure: the normalize and decide stages, the evidence runner, the executor
and ``/tools`` all ask the same object.

Rules (docs/policies.md, "Tenant scope"):

- ``namespaces`` / ``clusters`` / ``senders`` are fnmatch patterns; namespaces and
  clusters match case-sensitively (Kubernetes names are lower case), senders
  case-insensitively (mail addresses are).
- No namespaces: the tenant is *unscoped*: it may read anything (allowed only when it
  is the only tenant) and may change nothing.
- With namespaces: reads and writes must name a namespace that matches one. A read or
  write that names no namespace (``http.reload``, a silence over every namespace, a log
  search without a namespace term) reaches the whole cluster, so it needs the namespace
  pattern ``*`` itself.
- ``cluster``: with ``clusters`` set, a cluster the caller names must match one;
  ``None`` means the caller does not know it (it acts on the deployment's one
  configured backend), and only the namespace rule applies.
- ``senders`` empty: any sender (allowed only when it is the only tenant).
- A tenant that is not configured while several are gets nothing: no sender, no read,
  no write (:class:`TenantScopes`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from email.utils import getaddresses
from typing import Final

from policies.errors import PolicyError

#: Prefix of every refusal reason, so records and dashboards can find scope refusals.
OUTSIDE: Final = "outside tenant scope"
#: Untrusted names are quoted at most this long in a reason.
_QUOTE_CHARS: Final = 80
#: The namespace pattern that means "the whole cluster" (needed to read or change what names no namespace).
WHOLE_CLUSTER: Final = "*"


def _quote(value: str) -> str:
    return repr(value if len(value) <= _QUOTE_CHARS else value[:_QUOTE_CHARS] + "…")


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


class SenderNotAllowedError(PolicyError):
    """A mail's From address is not one of its tenant's senders; the mail is kept as a dead letter, never triaged.

    ``sender`` is the address as parsed (None when the mail names none); it is not a secret,
    and the on-call reader needs it to tell a spoof from a missing ``senders`` entry.
    """

    def __init__(self, tenant: str, sender: str | None, *, configured: bool = True) -> None:
        self.tenant = tenant
        self.sender = sender
        who = f"sender {_quote(sender)}" if sender else "a mail without exactly one From address"
        why = "" if configured else " (the tenant is not configured, and several others are)"
        super().__init__(f"{OUTSIDE}: {who} is not one of tenant {tenant}'s senders{why}")


@dataclass(frozen=True, slots=True)
class TenantScope:
    """One tenant's reach. Frozen and hashable; built once from the settings (``build_scopes``).

    Guarantees: an unscoped tenant (no namespaces) never gets a write; a write names a
    namespace inside ``namespaces`` or the tenant owns the whole cluster (``*``); with
    ``clusters`` set, a named cluster outside them is refused for reads and writes alike;
    a scope with ``configured=False`` refuses every sender, read and write.
    """

    tenant: str
    namespaces: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    senders: tuple[str, ...] = ()
    #: False for a tenant nobody configured while several tenants are (see TenantScopes).
    configured: bool = True

    @property
    def scoped(self) -> bool:
        """Whether the tenant has namespaces of its own (an unscoped tenant is read-only)."""
        return bool(self.namespaces)

    def why_not_read(self, *, cluster: str | None, namespace: str | None) -> str | None:
        """Why evidence about ``namespace`` (None: not confined to one namespace) of ``cluster`` is not the
        tenant's to read (``outside tenant scope: …``), or None when it is."""
        problem = self._unconfigured()
        if problem is None and self.scoped:
            problem = self._cluster_problem(cluster) or self._namespace_problem(namespace, "read")
        return f"{OUTSIDE}: {problem}" if problem else None

    def may_read(self, *, cluster: str | None, namespace: str | None) -> bool:
        """Whether the tenant may read evidence about ``namespace`` (None: a read over every namespace)."""
        return self.why_not_read(cluster=cluster, namespace=namespace) is None

    def why_not_write(self, *, cluster: str | None, namespace: str | None) -> str | None:
        """The reason (``outside tenant scope: …``) an action on this target is refused, or None when allowed."""
        problem = self._unconfigured()
        if problem is None and not self.scoped:
            problem = f"tenant {self.tenant} has no namespaces configured, so it is read-only"
        if problem is None:
            problem = self._cluster_problem(cluster) or self._namespace_problem(namespace, "act on")
        return f"{OUTSIDE}: {problem}" if problem else None

    def may_write(self, *, cluster: str | None, namespace: str | None) -> bool:
        """Whether an action on ``namespace`` (None: a cluster-wide action) of ``cluster`` is the tenant's."""
        return self.why_not_write(cluster=cluster, namespace=namespace) is None

    def accepts_sender(self, address: str) -> bool:
        """Whether mail from ``address`` (a bare address or a whole From header value) may speak for the tenant.

        No sender patterns: any sender. Otherwise exactly one parseable address must match a
        pattern, case-insensitively; an empty or unparseable From never does.
        """
        if not self.configured:
            return False
        if not self.senders:
            return True
        bare = sender_address(address)
        return bare is not None and any(fnmatch.fnmatchcase(bare, pattern.lower()) for pattern in self.senders)

    def _unconfigured(self) -> str | None:
        if self.configured:
            return None
        return f"tenant {self.tenant} is not configured (several tenants are, so an unlisted one gets nothing)"

    def _cluster_problem(self, cluster: str | None) -> str | None:
        if cluster is None or not self.clusters or _matches(cluster, self.clusters):
            return None
        return f"cluster {_quote(cluster)} is not one of tenant {self.tenant}'s clusters ({', '.join(self.clusters)})"

    def _namespace_problem(self, namespace: str | None, verb: str) -> str | None:
        if namespace is None:
            if WHOLE_CLUSTER in self.namespaces:
                return None
            return (f"names no namespace, so it would {verb} the whole cluster; tenant {self.tenant} has only "
                    f"namespaces {', '.join(self.namespaces)}")
        if _matches(namespace, self.namespaces):
            return None
        return (f"namespace {_quote(namespace)} is not one of tenant {self.tenant}'s namespaces "
                f"({', '.join(self.namespaces)})")


def sender_address(value: str) -> str | None:
    """The one bare, lower-case address in a From value (``Name <a@b>`` or ``a@b``), or None when there is
    not exactly one plausible address (empty, several, or with spaces)."""
    found = getaddresses([value])
    if len(found) != 1:
        return None
    bare = found[0][1].strip().lower()
    if not bare or bare.count("@") != 1 or any(ch.isspace() or ch in ",;<>" for ch in bare):
        return None
    return bare


class TenantScopes(Mapping[str, TenantScope]):
    """Every configured tenant's scope; ``scopes[tenant]`` (and ``.get``) answer for any tenant name.

    A single-tenant deployment names its tenant freely (mailboxes, tokens, tests), so with
    zero or one tenant configured an unlisted tenant gets that one tenant's scope under its
    own name. With several, an unlisted tenant gets a scope that accepts no sender and
    reads and changes nothing. ``in``, ``len`` and iteration cover the configured tenants only.
    """

    def __init__(self, scopes: Iterable[TenantScope]) -> None:
        self._scopes = {scope.tenant: scope for scope in scopes}

    def __getitem__(self, tenant: str) -> TenantScope:
        known = self._scopes.get(tenant)
        if known is not None:
            return known
        if not self._scopes:
            return TenantScope(tenant=tenant)
        if len(self._scopes) == 1:
            return replace(next(iter(self._scopes.values())), tenant=tenant)
        return TenantScope(tenant=tenant, configured=False)

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._scopes

    def __iter__(self) -> Iterator[str]:
        return iter(self._scopes)

    def __len__(self) -> int:
        return len(self._scopes)


def scopes_of(scopes: Mapping[str, TenantScope] | Iterable[TenantScope]) -> TenantScopes:
    """A :class:`TenantScopes` from scopes (or a tenant → scope map), for callers that were handed a plain map."""
    if isinstance(scopes, TenantScopes):
        return scopes
    values = scopes.values() if isinstance(scopes, Mapping) else scopes
    return TenantScopes(values)
