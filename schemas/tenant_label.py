"""The ``tenant`` label of every rcaflow metric: a configured tenant by name, anything else as one value.

A record's ``tenant`` field comes from outside (a mail's mailbox, a webhook's token, a key on a topic anyone
with write access can fill), so used as a label value it would let a sender mint a new time series per
record. Every metric maps it through :class:`TenantLabels`, built from the configured tenants, so the label
set is bounded by the configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

#: The label value of a tenant that is not configured (or not known, such as a request refused before its
#: token was read). The leading underscore keeps it apart from a tenant that is really called "other";
#: ``streams.settings`` refuses a tenant of this name.
OTHER_TENANT: Final = "_other"


@dataclass(frozen=True, slots=True)
class TenantLabels:
    """Maps a record's tenant to its label value: itself when configured, else :data:`OTHER_TENANT`."""

    tenants: frozenset[str] = frozenset()

    @classmethod
    def of(cls, tenants: Iterable[str]) -> TenantLabels:
        return cls(frozenset(tenants))

    def __call__(self, tenant: str | None) -> str:
        return tenant if tenant and tenant in self.tenants else OTHER_TENANT
