"""Pure validators and escapers for untrusted text (labels, LLM output) before it reaches a query or a name.

Every value that enters PromQL, a Kubernetes name or an action parameter passes one of these
first; the formats are the upstream rules (Kubernetes DNS-1123, label values, Prometheus names).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

from policies.errors import LabelValidationError

#: Kubernetes DNS-1123 label (namespaces, container names): lower case, <= 63.
DNS1123_LABEL: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
#: Kubernetes DNS-1123 subdomain (pod, deployment, statefulset names): <= 253.
DNS1123_SUBDOMAIN: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
#: Kubernetes label value (cluster names like HK-DCE5-PLATFORM): <= 63.
LABEL_VALUE: Final = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
#: Kubernetes annotation key: optional DNS subdomain prefix + "/" + qualified name.
ANNOTATION_KEY: Final = re.compile(
    r"(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
#: Prometheus label name.
PROM_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Alert names: Prometheus metric-name characters plus any Unicode letter (DCE 5 names like 日志泛滥).
ALERT_NAME: Final = re.compile(r"[\w:.\-]{1,200}")
#: Alertmanager/Prometheus duration, one unit (what our silences and cooldowns use).
DURATION: Final = re.compile(r"[1-9][0-9]{0,4}(?:ms|s|m|h|d|w)")
#: Prometheus ``instance``: host or IPv4 with optional port, or a bracketed IPv6 address with optional port.
INSTANCE: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)
#: Small non-negative integer (replica counts).
SMALL_INT: Final = re.compile(r"0|[1-9][0-9]{0,3}")
#: Free text for comments: printable, no quotes, braces, backslashes or shell/HTML metacharacters.
SAFE_TEXT: Final = re.compile(r"[^\x00-\x1f\x7f\"'`\\{}<>$;|&]{1,256}")

_DNS1123_SUBDOMAIN_MAX = 253


def _subdomain(value: str) -> bool:
    return len(value) <= _DNS1123_SUBDOMAIN_MAX and DNS1123_SUBDOMAIN.fullmatch(value) is not None


def _workload_name(value: str) -> bool:
    """A DNS-1123 subdomain that is not an IP address: ``10.6.0.12`` is a DNS-1123 subdomain but the scraped
    target of an ``instance`` label, never a pod or a workload."""
    if not _subdomain(value):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return True
    return False


def _fullmatch(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda value: pattern.fullmatch(value) is not None


FORMATS: Final[dict[str, Callable[[str], bool]]] = {
    "dns1123_label": _fullmatch(DNS1123_LABEL),
    "dns1123_subdomain": _subdomain,
    "workload_name": _workload_name,
    "label_value": lambda v: v != "" and LABEL_VALUE.fullmatch(v) is not None,
    "annotation_key": lambda v: len(v) <= _DNS1123_SUBDOMAIN_MAX + 64 and ANNOTATION_KEY.fullmatch(v) is not None,
    "prom_label_name": _fullmatch(PROM_LABEL_NAME),
    "alert_name": _fullmatch(ALERT_NAME),
    "instance": _fullmatch(INSTANCE),
    "duration": _fullmatch(DURATION),
    "small_int": _fullmatch(SMALL_INT),
    "safe_text": _fullmatch(SAFE_TEXT),
}
"""Format name (as written in the policy file) -> predicate."""


def is_valid(fmt: str, value: str) -> bool:
    """True when ``value`` has format ``fmt``; an unknown format is never valid."""
    check = FORMATS.get(fmt)
    return check is not None and check(value)


def validate(fmt: str, value: str, *, what: str = "value") -> str:
    """Return ``value`` unchanged if it has format ``fmt``, else raise without echoing it whole."""
    if not is_valid(fmt, value):
        raise LabelValidationError(f"{what} {preview(value)} is not a valid {fmt}")
    return value


def preview(value: str, limit: int = 40) -> str:
    """A short, quoted, control-character-free rendering of untrusted text for error messages."""
    shown = value if len(value) <= limit else value[:limit] + "…"
    return repr(shown)


def promql_escape(value: str) -> str:
    """Escape ``value`` for use inside a double-quoted PromQL string literal.

    PromQL strings follow Go's escaping rules; escaping the backslash first and then the quote
    and the control characters keeps any label text inside the literal it was put in.
    """
    out: list[str] = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


_RE2_SPECIAL: Final = frozenset(r"\.+*?()|[]{}^$")


def promql_regex_escape(value: str) -> str:
    """Escape ``value`` as a literal for a PromQL ``=~`` matcher (RE2), then for the string literal."""
    quoted = "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in value)
    return promql_escape(quoted)


_STATEFULSET_ORDINAL: Final = re.compile(r"^(?P<name>.+)-(?:0|[1-9][0-9]*)$")
_DEPLOYMENT_POD: Final = re.compile(r"^(?P<name>.+)-[a-z0-9]{5,10}-[a-z0-9]{5}$")


def statefulset_of_pod(pod: str) -> str:
    """``amamba-jenkins-0`` -> ``amamba-jenkins``; names without an ordinal are returned as they are."""
    match = _STATEFULSET_ORDINAL.match(pod)
    return match.group("name") if match else pod


def deployment_of_pod(pod: str) -> str:
    """``vmalert-x-7b5c9d8f6-hk2lq`` -> ``vmalert-x`` (drops the ReplicaSet hash and pod suffix)."""
    match = _DEPLOYMENT_POD.match(pod)
    return match.group("name") if match else pod


TRANSFORMS: Final[dict[str, Callable[[str], str]]] = {
    "statefulset_of_pod": statefulset_of_pod,
    "deployment_of_pod": deployment_of_pod,
    "lower": str.lower,
}
"""Transforms a variable source may apply (``labels.workload|statefulset_of_pod``)."""
