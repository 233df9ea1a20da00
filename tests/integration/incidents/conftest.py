"""The incident API on the real broker: a worker + executor stack of this folder's own, and `rcaflow api`'s own
composition (``build_api``) served by uvicorn on a loopback port, so the CLI and a browser speak real HTTP to it."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from producers.publisher import KafkaPublisher
from schemas.codec import Codec, make_codec
from streams.api.app import TenantAuth
from streams.api.process import build_api
from streams.settings import ApprovalSettings, KafkaSettings, SecuritySettings, Settings, TenantSettings
from streams.wiring.runtime import build_stages
from streams.wiring.supervisor import Stack
from tests.integration.flow.approval_helpers import wait_until_the_worker_waits
from tests.integration.flow.conftest import DECISION_KEY, stack_for
from tests.integration.flow.helpers import send_mail_file
from tests.support.approval_keys import APPROVAL_KEY

TENANT, OTHER = "t-api", "t-else"
#: api:alice approves for TENANT (the executor checks the same list); api:mallory has a token, not the right.
APPROVERS = {TENANT: ["api:alice"], OTHER: ["api:bob"]}
TOKENS = {"read": "t-api-read-token", "other": "t-else-read-token", "alice": "alice-approver-token",
          "mallory": "mallory-has-a-token-only", "bob": "bob-approves-t-else"}


@pytest.fixture(scope="module")
def stack(broker: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    with stack_for(bootstrap, tmp_path_factory.mktemp("stack"),
                   extra_env={"RCAFLOW_APPROVALS__APPROVERS": json.dumps(APPROVERS)}) as running:
        yield running


@pytest.fixture(scope="module")
def codec() -> Codec:
    return make_codec(None)


@dataclass
class Api:
    url: str

    def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers={"Authorization": f"Bearer {TOKENS[token]}"},
                         timeout=10)

    def wait_for(self, what: str, path: str, token: str, predicate: Callable[[Any], bool], check: Callable[[], None],
                 timeout: float = 120.0, **params: Any) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            check()
            response = self.get(path, token, **params)
            last = response.json() if response.status_code == 200 else response.status_code
            if response.status_code == 200 and predicate(last):
                return last
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; last answer: {last}")


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Debian's headless Chromium driven by selenium through Debian's chromedriver."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("the console test needs Debian's chromium and chromium-driver (.ci/system-deps.sh installs them)")
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api(stack: Stack) -> Iterator[Api]:
    """`rcaflow api` as build_api composes it, on this module's topics, with tenant and approver tokens."""
    settings = Settings(
        kafka_bootstrap_servers=stack.bootstrap,
        kafka=KafkaSettings(topic_prefix=stack.settings.kafka.topic_prefix),
        tenants={TENANT: TenantSettings(token=SecretStr(TOKENS["read"]), namespaces=["*"], senders=["*"]),
                 OTHER: TenantSettings(token=SecretStr(TOKENS["other"]), namespaces=["*"], senders=["*"])},
        approvals=ApprovalSettings(approvers=APPROVERS, api_tokens={
            TENANT: {"alice": SecretStr(TOKENS["alice"]), "mallory": SecretStr(TOKENS["mallory"])},
            OTHER: {"bob": SecretStr(TOKENS["bob"])}}),
        security=SecuritySettings(approval_key=SecretStr(APPROVAL_KEY), decision_key=SecretStr(DECISION_KEY)),
    )
    with serving(settings, stack.bootstrap) as running:
        yield running


@contextlib.contextmanager
def serving(settings: Settings, bootstrap: str) -> Iterator[Api]:
    """`rcaflow api` as build_api composes it, served by uvicorn on a loopback port until the block ends."""
    auth = TenantAuth({t: s.token for t, s in settings.tenants.items()}, "default")
    registry = CollectorRegistry()
    app = build_api(settings, bootstrap, build_stages(settings), auth, registry=registry)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="incident-api", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the API's views never caught up"
        time.sleep(0.3)
    try:
        yield Api(url)
    finally:
        server.should_exit = True
        thread.join(30)


def waiting_incident(api: Api, stack: Stack, codec: Codec, samples_dir: Path, tenant: str) -> tuple[str, str]:
    """Send the Jenkins restart mail for ``tenant``; (incident id, action id) once the API lists it as waiting."""
    publisher = KafkaPublisher(stack.bootstrap, codec, stack.settings.kafka.topic_prefix)
    try:
        send_mail_file(publisher, tenant, samples_dir / "jenkins_restart.eml")
    finally:
        publisher.close_sync()
    token = "read" if tenant == TENANT else "other"
    page = api.wait_for("an action awaiting approval", "/actions", token, lambda p: bool(p["items"]), stack.check,
                        state="awaiting_approval")
    [action] = page["items"]
    wait_until_the_worker_waits(stack, f"{tenant}:{action['action_id']}")
    return action["incident_id"], action["action_id"]
