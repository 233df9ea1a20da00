"""A local stand-in for the Microsoft identity platform and the Graph mail endpoints the producer uses.

Implements, as documented: OpenID discovery and the client-credentials token endpoint
(``/{tenant}/v2.0/.well-known/openid-configuration``, ``/{tenant}/oauth2/v2.0/token``);
``/v1.0/subscriptions`` (GET list, POST create with the 4230-minute cap, PATCH renew,
DELETE, POST ``/reauthorize``); ``/v1.0/users/{id}/messages/{id}/$value`` (MIME bytes);
``/v1.0/users/{id}/mailFolders/{folder}/messages/delta`` with ``@odata.nextLink`` paging
(``$skiptoken``) until an ``@odata.deltaLink`` (``$deltatoken``), 410 for expired delta and skip tokens;
bearer tokens that can be expired (401). Faults (429 + Retry-After, 503, 404) are queued
per method+path with :meth:`GraphStandIn.fail_next`.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_MINUTES = 4230
CLIENT_ID = "app-client-id"
CLIENT_SECRET = "app-client-secret"
DIRECTORY = "contoso-directory"


def error(code: int, message: str, headers: dict[str, str] | None = None, gcode: str = "") -> JSONResponse:
    return JSONResponse({"error": {"code": gcode or str(code), "message": message}}, status_code=code,
                        headers=headers)


@dataclass
class Fault:
    status: int
    headers: dict[str, str]


@dataclass
class StoredMessage:
    seq: int
    id: str
    user: str
    folder: str
    mime: bytes
    internet_message_id: str
    received: datetime


@dataclass
class GraphStandIn:
    page_size: int = 2
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    valid_tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)
    expired_delta_tokens: set[str] = field(default_factory=set)
    #: ``$skiptoken`` values (the state of a nextLink) answered 410 from now on, as for an expired sync state.
    expired_skip_tokens: set[str] = field(default_factory=set)
    #: The query of every delta request, in order (``$skiptoken`` / ``$deltatoken``, or neither for a first page).
    delta_queries: list[dict[str, str]] = field(default_factory=list)
    faults: dict[tuple[str, str], list[Fault]] = field(default_factory=dict)
    reauthorized: list[str] = field(default_factory=list)
    _seq: int = 0
    _rounds: int = 0
    _issued_skip_tokens: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ test controls

    def add_message(self, user: str, mime: bytes, internet_message_id: str, folder: str = "inbox") -> str:
        self._seq += 1
        message_id = f"AAMk{uuid.uuid4().hex}{self._seq:04d}="
        self.messages[message_id] = StoredMessage(
            self._seq, message_id, user.lower(), folder.lower(), mime, internet_message_id,
            datetime.now(UTC).replace(microsecond=0),
        )
        return message_id

    def fail_next(self, method: str, path: str, status: int, times: int = 1, **headers: str) -> None:
        """The next ``times`` requests to ``method path`` (path after /v1.0, or 'token') get ``status``."""
        self.faults.setdefault((method, path), []).extend(Fault(status, dict(headers)) for _ in range(times))

    def expire_skip_tokens(self) -> None:
        """Every nextLink handed out so far is answered 410 ``SyncStateNotFound`` from now on."""
        self.expired_skip_tokens.update(self._issued_skip_tokens)

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    def issue_token(self) -> str:
        token = f"tok-{uuid.uuid4().hex}"
        self.valid_tokens.add(token)
        return token

    # ------------------------------------------------------------------ plumbing

    def _fault(self, method: str, path: str) -> Response | None:
        queue = self.faults.get((method, path))
        if queue:
            fault = queue.pop(0)
            return error(fault.status, "injected", fault.headers)
        return None

    def _authorized(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.valid_tokens

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self._openid, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/v1.0/{path:path}", self._graph, methods=["GET", "POST", "PATCH", "DELETE"]),
        ])

    async def _openid(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        tenant = request.path_params["tenant"]
        return JSONResponse({
            "issuer": f"{base}/{tenant}/v2.0",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        })

    async def _token(self, request: Request) -> Response:
        self.token_requests += 1
        fault = self._fault("POST", "token")
        if fault is not None:
            return fault
        form = parse_qs((await request.body()).decode())
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if form.get("client_id") != [CLIENT_ID] or form.get("client_secret") != [CLIENT_SECRET]:
            return JSONResponse({"error": "invalid_client", "error_description": "AADSTS7000215"}, status_code=401)
        if form.get("scope") != ["https://graph.microsoft.com/.default"]:
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        return JSONResponse({"token_type": "Bearer", "expires_in": 3599, "access_token": self.issue_token()})

    async def _graph(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        method = request.method
        self.requests.append((method, path))
        if not self._authorized(request):
            return error(401, "Access token has expired or is not yet valid.", gcode="InvalidAuthenticationToken")
        fault = self._fault(method, path)
        if fault is not None:
            return fault
        parts = path.strip("/").split("/")
        if parts[0] == "subscriptions":
            return await self._subscriptions(request, method, parts[1:])
        if len(parts) == 5 and parts[0] == "users" and parts[2] == "messages" and parts[4] == "$value":
            message = self.messages.get(parts[3])
            if message is None or message.user != parts[1].lower():
                return error(404, "The specified object was not found in the store.", gcode="ErrorItemNotFound")
            return Response(message.mime, media_type="text/plain")
        if len(parts) == 6 and parts[0] == "users" and parts[2] == "mailFolders" and parts[4:] == ["messages", "delta"]:
            return self._delta(request, parts[1].lower(), parts[3].lower())
        return error(400, f"unsupported request {method} {path}")

    async def _subscriptions(self, request: Request, method: str, rest: list[str]) -> Response:
        if not rest:
            if method == "GET":
                return JSONResponse({"value": list(self.subscriptions.values())})
            if method != "POST":
                return error(405, "method not allowed")
            body = json.loads(await request.body())
            problem = _check_expiry(body.get("expirationDateTime"))
            if problem:
                return error(400, problem, gcode="InvalidRequest")
            for required in ("changeType", "notificationUrl", "resource", "clientState", "lifecycleNotificationUrl"):
                if not body.get(required):
                    return error(400, f"{required} is required", gcode="InvalidRequest")
            sub_id = str(uuid.uuid4())
            # Graph does not echo clientState back in reads.
            self.subscriptions[sub_id] = {
                "id": sub_id, "resource": body["resource"], "changeType": body["changeType"],
                "notificationUrl": body["notificationUrl"], "expirationDateTime": body["expirationDateTime"],
                "lifecycleNotificationUrl": body["lifecycleNotificationUrl"], "clientState": None,
                "_clientState": body["clientState"],
            }
            return JSONResponse(_public(self.subscriptions[sub_id]), status_code=201)
        sub = self.subscriptions.get(rest[0])
        if sub is None:
            return error(404, "The object was not found.", gcode="ResourceNotFound")
        if len(rest) == 2 and rest[1] == "reauthorize" and method == "POST":
            self.reauthorized.append(rest[0])
            return Response(status_code=200)
        if method == "PATCH":
            body = json.loads(await request.body())
            problem = _check_expiry(body.get("expirationDateTime"))
            if problem:
                return error(400, problem, gcode="InvalidRequest")
            sub["expirationDateTime"] = body["expirationDateTime"]
            return JSONResponse(_public(sub))
        if method == "DELETE":
            del self.subscriptions[rest[0]]
            return Response(status_code=204)
        if method == "GET":
            return JSONResponse(_public(sub))
        return error(405, "method not allowed")

    def _delta(self, request: Request, user: str, folder: str) -> Response:
        base = str(request.base_url).rstrip("/") + request.url.path
        query = request.query_params
        self.delta_queries.append({k: v for k, v in query.items() if k in ("$skiptoken", "$deltatoken")})
        if "$skiptoken" in query:
            if query["$skiptoken"] in self.expired_skip_tokens:
                return error(410, "The sync state generation is not found.", gcode="SyncStateNotFound")
            since_s, offset_s, upto_s, round_s = query["$skiptoken"].split(".")
            since, offset, upto, sync_round = int(since_s), int(offset_s), int(upto_s), int(round_s)
        else:
            token = query.get("$deltatoken")
            if token is not None and token in self.expired_delta_tokens:
                return error(410, "The sync state generation is not found.", gcode="SyncStateNotFound")
            since, offset = (int(token) if token is not None else 0), 0
            upto = self._seq
            # Each round's paging state is its own (as Graph's): a new round never reuses an expired skip token.
            self._rounds += 1
            sync_round = self._rounds
        changed = sorted(
            (m for m in self.messages.values() if m.user == user and m.folder == folder and since < m.seq <= upto),
            key=lambda m: m.seq,
        )
        page = changed[offset:offset + self.page_size]
        value = [
            {"@odata.type": "#microsoft.graph.message", "id": m.id, "internetMessageId": m.internet_message_id,
             "receivedDateTime": m.received.isoformat().replace("+00:00", "Z")}
            for m in page
        ]
        body: dict[str, Any] = {"value": value}
        if offset + self.page_size < len(changed):
            skip_token = f"{since}.{offset + self.page_size}.{upto}.{sync_round}"
            self._issued_skip_tokens.append(skip_token)
            body["@odata.nextLink"] = f"{base}?$skiptoken={skip_token}"
        else:
            body["@odata.deltaLink"] = f"{base}?$deltatoken={upto}"
        return JSONResponse(body)

    def expire_subscription(self, sub_id: str) -> None:
        self.subscriptions.pop(sub_id, None)


def _public(sub: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sub.items() if not k.startswith("_")}


def _check_expiry(value: Any) -> str | None:
    if not isinstance(value, str):
        return "expirationDateTime is required"
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    now = datetime.now(UTC)
    if when <= now:
        return "Subscription expiration can only be in the future."
    if when - now > timedelta(minutes=MAX_MINUTES):
        return f"Subscription expiration can only be {MAX_MINUTES} minutes in the future."
    return None


@contextmanager
def serve_tls(app: Starlette, certfile: str, keyfile: str) -> Iterator[int]:
    """Run ``app`` over HTTPS on a free loopback port in a thread; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, ssl_certfile=certfile, ssl_keyfile=keyfile, log_level="warning", lifespan="off",
                            timeout_keep_alive=1, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("stand-in server did not start")
            threading.Event().wait(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def self_signed(directory: Any) -> tuple[str, str]:
    """A certificate for localhost/127.0.0.1 and its key, as PEM files; the cert is its own CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = f"{directory}/cert.pem", f"{directory}/key.pem"
    with open(certfile, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return certfile, keyfile
