"""The web console in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium) against the
real API, worker and executor: sign in, see the incident appear in the list, open it, approve its high-risk
action, and see the executor's outcome on the page, in English and in Chinese. Screenshots go to docs/console/.
"""

from __future__ import annotations

from pathlib import Path

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from schemas.codec import Codec
from streams.wiring.supervisor import Stack
from tests.integration.incidents.conftest import TOKENS, Api, waiting_incident

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "console"
WAIT_S = 90


def _wait(browser: WebDriver, stack: Stack) -> WebDriverWait[WebDriver]:
    stack.check()
    return WebDriverWait(browser, WAIT_S, poll_frequency=0.3, ignored_exceptions=(WebDriverException,))


def _sign_in(browser: WebDriver, api: Api, token: str) -> None:
    browser.get(f"{api.url}/console")
    field = WebDriverWait(browser, 30).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=token]")))
    field.send_keys(TOKENS[token])
    browser.find_element(By.CSS_SELECTOR, "[data-testid=login]").click()


def test_an_approver_opens_the_incident_approves_and_sees_the_outcome(
    api: Api, stack: Stack, codec: Codec, samples_dir: Path, browser: WebDriver
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    _sign_in(browser, api, "alice")
    wait = _wait(browser, stack)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=who]"), "api:alice"))

    # Live list: the incident shows up while the page is open (polling), nobody reloads it.
    incident_id, action_id = waiting_incident(api, stack, codec, samples_dir, "t-api")
    row = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, f"tr[data-incident='{incident_id}']")))
    browser.save_screenshot(str(SHOTS / "incidents-en.png"))
    row.click()

    card = f"div.action[data-action='{action_id}']"
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, f"{card} [data-testid=action-state]"),
                                                "awaiting approval"))
    timeline = browser.find_element(By.CSS_SELECTOR, "[data-testid=timeline]").text
    assert "JenkinsRestarted" in timeline and "awaits approval" in timeline
    assert browser.find_elements(By.CSS_SELECTOR, "#evidence code"), "the evidence queries are shown"
    browser.save_screenshot(str(SHOTS / "incident-awaiting-en.png"))

    browser.find_element(By.CSS_SELECTOR, f"{card} [data-testid=reason]").send_keys("approved from the console")
    browser.find_element(By.CSS_SELECTOR, f"{card} [data-testid=approve]").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=decision-message]"),
                                                "Recorded: Approve by api:alice"))
    # The executor's outcome arrives through the view and the page's polling (the test stack runs dry: a dry
    # run never reads "succeeded").
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, f"{card} [data-testid=action-state]"),
                                                "dry-run"))
    text = browser.find_element(By.CSS_SELECTOR, card).text
    assert "api:alice" in text
    assert "approve by api:alice via api: approved from the console" in browser.find_element(
        By.CSS_SELECTOR, "[data-testid=timeline]").text
    assert not browser.find_elements(By.CSS_SELECTOR, f"{card} [data-testid=approve]"), "no buttons once decided"
    browser.save_screenshot(str(SHOTS / "incident-approved-en.png"))

    # 中文 (Chinese): the same page in the other language.
    browser.find_element(By.CSS_SELECTOR, "[data-testid=lang]").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, f"{card} [data-testid=action-state]"), "演练"))
    assert "时间线" in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(SHOTS / "incident-approved-zh.png"))
    browser.get(f"{api.url}/console#/")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-incident='{incident_id}']")))
    assert "告警类别" in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(SHOTS / "incidents-zh.png"))


def test_a_reader_sees_no_buttons_and_a_wrong_token_is_refused(api: Api, stack: Stack, browser: WebDriver) -> None:
    _sign_in(browser, api, "other")
    wait = _wait(browser, stack)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=who]"), "t-else"))
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=approve]")
    # Another tenant's incidents are not in its list (the first test's incident belongs to t-api).
    assert "JenkinsRestarted" not in browser.find_element(By.CSS_SELECTOR, "[data-testid=incident-rows]").text
    browser.find_element(By.ID, "logout").click()
    field = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid=token]")))
    field.send_keys("not-a-token")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=login]").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid=login-error]"), "refused"))
