"""TenantScope: a tenant reads and changes only its own namespaces and clusters, and only its senders speak for it."""

from __future__ import annotations

import pytest

from policies.tenant_scope import TenantScope, TenantScopes

ACME = TenantScope(tenant="acme", namespaces=("team-a-*", "acme"), clusters=("acme-*",),
                   senders=("*@alerts.acme.com", "oncall@acme.com"))
OWNER = TenantScope(tenant="ops", namespaces=("*",))
UNSCOPED = TenantScope(tenant="default")


def test_writes_stay_inside_the_tenants_namespaces_and_clusters() -> None:
    assert ACME.may_write(cluster="acme-prod", namespace="team-a-web")
    assert ACME.may_write(cluster=None, namespace="acme")  # the executor's one cluster: only the namespace counts
    assert not ACME.may_write(cluster="acme-prod", namespace="kube-system")
    assert not ACME.may_write(cluster="other-prod", namespace="team-a-web")
    assert ACME.why_not_write(cluster="acme-prod", namespace="kube-system") == (
        "outside tenant scope: namespace 'kube-system' is not one of tenant acme's namespaces (team-a-*, acme)")
    assert "cluster 'other-prod' is not one of tenant acme's clusters" in (
        ACME.why_not_write(cluster="other-prod", namespace="team-a-web") or "")


def test_patterns_are_whole_name_matches_not_prefixes() -> None:
    assert not ACME.may_write(cluster=None, namespace="acme-evil")
    assert not ACME.may_write(cluster=None, namespace="xteam-a-web")
    assert not ACME.may_write(cluster=None, namespace="TEAM-A-web")  # Kubernetes names are case-sensitive


def test_an_unscoped_tenant_reads_anything_and_changes_nothing() -> None:
    assert UNSCOPED.may_read(cluster="any", namespace="kube-system")
    assert UNSCOPED.may_read(cluster=None, namespace=None)
    assert not UNSCOPED.may_write(cluster=None, namespace="kube-system")
    assert UNSCOPED.why_not_write(cluster=None, namespace="x") == (
        "outside tenant scope: tenant default has no namespaces configured, so it is read-only")


def test_what_names_no_namespace_needs_the_whole_cluster() -> None:
    # http.reload, a silence over every namespace, a log search without a namespace term.
    assert not ACME.may_write(cluster="acme-prod", namespace=None)
    assert not ACME.may_read(cluster="acme-prod", namespace=None)
    assert "names no namespace" in (ACME.why_not_write(cluster=None, namespace=None) or "")
    assert OWNER.may_write(cluster=None, namespace=None)
    assert OWNER.may_read(cluster=None, namespace=None)


def test_reads_are_confined_like_writes() -> None:
    assert ACME.may_read(cluster="acme-prod", namespace="team-a-db")
    assert not ACME.may_read(cluster="acme-prod", namespace="team-b")
    assert not ACME.may_read(cluster="other-prod", namespace="team-a-db")


@pytest.mark.parametrize(("address", "accepted"), [
    ("vmalert@alerts.acme.com", True),
    ("VMAlert@Alerts.ACME.com", True),  # addresses are case-insensitive
    ("DCE5 Insight <insight@alerts.acme.com>", True),
    ("oncall@acme.com", True),
    ("attacker@evil.test", False),
    ("insight@alerts.acme.com.evil.test", False),
    ("insight@alerts.acme.com <attacker@evil.test>", False),
    ("a@alerts.acme.com, b@evil.test", False),
    ("", False),
    ("not an address", False),
])
def test_senders_are_matched_on_the_one_from_address(address: str, accepted: bool) -> None:
    assert ACME.accepts_sender(address) is accepted


def test_a_tenant_without_senders_accepts_any_sender() -> None:
    assert UNSCOPED.accepts_sender("anyone@anywhere.test")


def test_an_unlisted_tenant_gets_nothing_when_several_are_configured() -> None:
    scopes = TenantScopes([ACME, OWNER])
    stranger = scopes["stranger"]
    assert "stranger" not in scopes and len(scopes) == 2
    assert not stranger.accepts_sender("vmalert@alerts.acme.com")
    assert not stranger.may_read(cluster=None, namespace="team-a-web")
    assert not stranger.may_write(cluster=None, namespace="team-a-web")
    assert "tenant stranger is not configured" in (stranger.why_not_read(cluster=None, namespace="x") or "")
    assert scopes.get("stranger") == stranger  # .get answers too, so no caller falls back to "unrestricted"


def test_a_single_tenant_deployment_lends_its_scope_to_any_tenant_name() -> None:
    scopes = TenantScopes([ACME])
    borrowed = scopes["t-1234"]
    assert borrowed.tenant == "t-1234"
    assert (borrowed.namespaces, borrowed.clusters, borrowed.senders) == (ACME.namespaces, ACME.clusters, ACME.senders)
    assert TenantScopes([])["x"] == TenantScope(tenant="x")  # nothing configured: read-only, any sender


def test_long_untrusted_names_are_cut_in_reasons() -> None:
    reason = ACME.why_not_write(cluster=None, namespace="x" * 500) or ""
    assert len(reason) < 250 and "…" in reason
