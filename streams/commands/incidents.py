"""``rcaflow incidents``, ``incident ID``, ``approve ACTION_ID``, ``reject ACTION_ID``: the incident API over HTTP.

They talk to a running ``rcaflow api`` (``cli.api_url``, default http://127.0.0.1:8080) with ``cli.token``
(``RCAFLOW_CLI__TOKEN``): a tenant token reads, an API approver token reads and decides. A refusal is
one line naming the API's reason, with a non-zero exit: 1 refused, 2 cannot reach the API or unusable answer.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from streams.commands.context import settings_or_none

_EXIT_REFUSED = 1
_EXIT_UNREACHABLE = 2


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def _call(ctx: click.Context, method: str, path: str, *, api_url: str | None, token: str | None,
          params: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> Any:
    import httpx

    settings = settings_or_none(ctx)
    base = (api_url or (settings.cli.api_url if settings else "http://127.0.0.1:8080")).rstrip("/")
    secret = token or (settings.cli.token.get_secret_value() if settings and settings.cli.token else None)
    timeout = settings.cli.timeout_s if settings else 10.0
    headers = {"Accept": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    try:
        with httpx.Client(base_url=base, timeout=timeout, headers=headers) as client:
            response = client.request(method, path, params={k: v for k, v in (params or {}).items() if v is not None},
                                      json=body)
    except httpx.HTTPError as exc:
        _fail(f"rcaflow: cannot reach the API at {base}: {type(exc).__name__}: {exc}", _EXIT_UNREACHABLE)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 400:
        detail = payload.get("detail") if isinstance(payload, dict) else None
        reason = payload.get("reason") if isinstance(payload, dict) else None
        text = detail if isinstance(detail, str) else (json.dumps(detail) if detail else response.text[:200])
        _fail(f"rcaflow: {method} {path}: {response.status_code}"
              + (f" {reason}" if reason else "") + f": {text}",
              _EXIT_REFUSED if response.status_code < 500 else _EXIT_UNREACHABLE)
    if payload is None:
        _fail(f"rcaflow: {method} {path}: the API answered {response.status_code} without JSON", _EXIT_UNREACHABLE)
    return payload


_api_url = click.option("--api-url", default=None, help="Base URL of rcaflow api (default: cli.api_url).")
_token = click.option("--token", default=None, envvar="RCAFLOW_CLI__TOKEN", show_envvar=True,
                      help="Bearer token (default: cli.token).")


@click.command("incidents")
@click.option("--state", type=click.Choice(["open", "resolved"]), default=None)
@click.option("--class", "alert_class", default=None, help="Only this alert class.")
@click.option("--cluster", default=None, help="Only this cluster label.")
@click.option("--since", default=None, help="Active at or after this ISO 8601 time.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="next_cursor of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON page.")
@_api_url
@_token
@click.pass_context
def incidents(ctx: click.Context, state: str | None, alert_class: str | None, cluster: str | None,
              since: str | None, limit: int, cursor: str | None, as_json: bool, api_url: str | None,
              token: str | None) -> None:
    """List the tenant's incidents, newest first (GET /incidents)."""
    page = _call(ctx, "GET", "/incidents", api_url=api_url, token=token,
                 params={"state": state, "class": alert_class, "cluster": cluster, "since": since,
                         "limit": limit, "cursor": cursor})
    if as_json:
        click.echo(json.dumps(page, ensure_ascii=False))
        return
    items = page.get("items", [])
    # Columns as wide as this page's widest value (at least the old fixed widths): long class names and
    # cluster names must not push the later columns out of line.
    class_w = max([24, *(len(str(i["alert_class"])) for i in items)])
    cluster_w = max([20, *(len(str(i.get("cluster") or "-")) for i in items)])
    for item in items:
        count = item["actions_awaiting_approval"]
        waiting = f"  {count} awaiting approval" if count else ""
        click.echo(f"{item['incident_id']}  {item['state']:<8} {item['alert_class']:<{class_w}} "
                   f"{item.get('cluster') or '-':<{cluster_w}} x{item['count']:<4} {item['opened_at']}{waiting}")
    if page.get("next_cursor"):
        click.echo(f"more: --cursor {page['next_cursor']}", err=True)


@click.command("incident")
@click.argument("incident_id")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@_api_url
@_token
@click.pass_context
def incident(ctx: click.Context, incident_id: str, as_json: bool, api_url: str | None, token: str | None) -> None:
    """Show one incident and its timeline (GET /incidents/ID)."""
    from urllib.parse import quote

    detail = _call(ctx, "GET", f"/incidents/{quote(incident_id, safe='')}", api_url=api_url, token=token)
    if as_json:
        click.echo(json.dumps(detail, ensure_ascii=False))
        return
    click.echo(f"{detail['incident_id']}  {detail['alert']} [{detail['severity']}]  {detail['state']}  "
               f"class {detail['alert_class']}  cluster {detail.get('cluster') or '-'}")
    if detail.get("diagnosis"):
        click.echo(f"diagnosis: {detail['diagnosis']}")
    for entry in detail.get("timeline", []):
        click.echo(f"  {entry['at']}  {entry['kind']:<9} {entry['summary']}")
    for action in detail.get("actions", []):
        # The API's state: "dry-run" for a dry run that went through, never "succeeded".
        click.echo(f"action {action['action_id']} ({action['name']}): {action['state']}")
        if action["state"] == "awaiting_approval":
            click.echo(f"awaiting approval: {action['action_id']} ({action['name']}): "
                       f"rcaflow approve {action['action_id']}")


def _decision(verb: str) -> click.Command:
    @click.command(verb)
    @click.argument("action_id")
    @click.option("--reason", default="", help="Why (kept with the decision and in the audit trail).")
    @_api_url
    @_token
    @click.pass_context
    def command(ctx: click.Context, action_id: str, reason: str, api_url: str | None, token: str | None) -> None:
        from urllib.parse import quote

        result = _call(ctx, "POST", f"/actions/{quote(action_id, safe='')}/{verb}", api_url=api_url, token=token,
                       body={"reason": reason})
        done = {"approve": "approved", "reject": "rejected"}.get(result["decision"], result["decision"])
        click.echo(f"{done} {result['action_id']} as {result['approver']} via {result['via']}; "
                   "the worker applies it and the executor runs what was approved")

    command.help = (f"{verb.capitalize()} ACTION_ID as an API approver of its tenant "
                    f"(POST /actions/ACTION_ID/{verb}).")
    return command


approve = _decision("approve")
reject = _decision("reject")
