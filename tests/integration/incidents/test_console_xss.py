"""Mail text and LLM output are untrusted: the console shows them as text, and nothing in them runs.

An incident whose alert name, labels, annotations, evidence and LLM diagnosis carry ``<script>``,
``<img onerror>`` and ``<svg onload>`` payloads goes through the real path (records on the broker's topics →
the API's incidents feed → GET /incidents → the console in a real headless Chromium). The page must show the
payloads literally, hold none of their elements, and no payload may have run (a window flag stays unset, no
alert dialog opened). The console's Content-Security-Policy would also block inline handlers; these checks do
not lean on it: they fail as soon as one field is written as HTML.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from producers.publisher import KafkaPublisher
from schemas.codec import make_codec
from schemas.records import AlertEvent, Engine, Evidence, Incident, RcaResult
from schemas.topics import INCIDENTS, RCA_RESULT
from streams.settings import KafkaSettings, Settings, TenantSettings
from streams.wiring.topics_admin import ensure_topics
from tests.integration.incidents.conftest import serving

TENANT = "t-xss"
TOKEN = "t-xss-read-token"
WAIT_S = 90


def _payload(where: str) -> str:
    """Markup that sets ``window.__xss`` and opens an alert if it is ever parsed as HTML."""
    flag = f"window.__xss='{where}';alert('{where}')"
    return f'<script>{flag}</script><img src=x onerror="{flag}"><svg onload="{flag}"></svg> {where}'


ALERT = _payload("alert")
LABEL = _payload("label")
ANNOTATION = _payload("annotation")
DIAGNOSIS = _payload("diagnosis")
EVIDENCE = _payload("evidence")


def _publish_incident(bootstrap: str, prefix: str) -> str:
    now = datetime.now(UTC)
    event = AlertEvent(tenant=TENANT, event_id=f"ev-{uuid.uuid4().hex[:8]}", fingerprint="fp-xss", alert=ALERT,
                       severity="P2", alert_class="jenkins_restart",
                       labels={"cluster": "c1", "namespace": "ci", "workload": LABEL},
                       annotations={"description": ANNOTATION}, received_at=now, parser="test")
    incident = Incident(tenant=TENANT, incident_id=f"inc-{uuid.uuid4().hex[:8]}", fingerprint="fp-xss",
                        alert_class="jenkins_restart", opened_at=now, last_seen_at=now, count=1,
                        last_event_id=event.event_id, event=event)
    diagnosis = RcaResult(tenant=TENANT, incident_id=incident.incident_id, alert_class="jenkins_restart",
                          engine=Engine.LLM, diagnosis=DIAGNOSIS, cause=DIAGNOSIS, confidence=0.5,
                          evidence=[Evidence(tool="prom", operation="query", query=EVIDENCE, summary=EVIDENCE)],
                          produced_at=now + timedelta(seconds=1), incident=incident, model="test-model")
    publisher = KafkaPublisher(bootstrap, make_codec(None), prefix)
    try:
        publisher.publish_sync(INCIDENTS, f"{TENANT}:fp-xss", incident)
        publisher.publish_sync(RCA_RESULT, f"{TENANT}:{incident.incident_id}", diagnosis)
    finally:
        publisher.close_sync()
    return incident.incident_id


def _no_payload_ran(browser: WebDriver) -> None:
    try:
        text = browser.switch_to.alert.text
    except NoAlertPresentException:
        text = None
    assert text is None, f"a payload opened an alert: {text!r}"
    assert browser.execute_script("return window.__xss === undefined ? null : window.__xss") is None


def _no_payload_elements(browser: WebDriver) -> None:
    injected = browser.find_elements(By.CSS_SELECTOR, "main img, main script, main svg")
    assert not injected, [e.get_attribute("outerHTML") for e in injected]


def test_payloads_in_alert_labels_annotations_and_llm_output_are_shown_as_text(
    broker: object, browser: WebDriver
) -> None:
    bootstrap = broker.bootstrap  # type: ignore[attr-defined]
    prefix = f"xss-{uuid.uuid4().hex[:8]}."
    ensure_topics(bootstrap, prefix)
    settings = Settings(kafka_bootstrap_servers=bootstrap, kafka=KafkaSettings(topic_prefix=prefix),
                        tenants={TENANT: TenantSettings(token=SecretStr(TOKEN), namespaces=["*"], senders=["*"])})
    with serving(settings, bootstrap) as api:
        incident_id = _publish_incident(bootstrap, prefix)
        browser.get(f"{api.url}/console")
        wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.3, ignored_exceptions=(WebDriverException,))
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=token]"))).send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "[data-testid=login]").click()

        # The list: the alert name, literally.
        row = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"tr[data-incident='{incident_id}']")))
        assert ALERT in row.text, row.text
        _no_payload_ran(browser)
        _no_payload_elements(browser)

        # The incident page: title, diagnosis, labels and annotations, evidence, timeline.
        row.click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=diagnosis]"), "diagnosis"))
        browser.find_element(By.CSS_SELECTOR, "#detail details summary").click()  # unfold the labels
        shown = {
            "title": browser.find_element(By.CSS_SELECTOR, "[data-testid=detail-title]").text,
            "diagnosis": browser.find_element(By.CSS_SELECTOR, "[data-testid=diagnosis]").text,
            "labels": browser.find_element(By.CSS_SELECTOR, "[data-testid=labels]").text,
            "evidence": browser.find_element(By.ID, "evidence").text,
            "timeline": browser.find_element(By.CSS_SELECTOR, "[data-testid=timeline]").text,
        }
        assert ALERT in shown["title"], shown
        assert DIAGNOSIS in shown["diagnosis"], shown
        assert LABEL in shown["labels"] and ANNOTATION in shown["labels"], shown
        assert EVIDENCE in shown["evidence"], shown
        assert ALERT in shown["timeline"], shown
        _no_payload_ran(browser)
        _no_payload_elements(browser)
