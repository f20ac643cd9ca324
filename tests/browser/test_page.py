"""The page in headless Debian chromium, against real gunicorn: type a comment, read the six bars."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import requests

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "artifacts" / "page.png"

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(f"browser test not run: {CHROMIUM} or {CHROMEDRIVER} is not installed", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

sys.path.insert(0, str(REPO))
from tools import serve_local as gs  # noqa: E402  (the one server launcher)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_bundle_dir, tiny_sqlite_path):
    work = tmp_path_factory.mktemp("page")
    env = gs.base_env(tiny_bundle_dir, tiny_sqlite_path, work, max_text_chars=2000)
    srv = gs.start(env, work / "gunicorn.log", workers=1)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="toxic-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=900,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _bars(driver) -> dict[str, float]:
    meters = driver.find_elements(By.CSS_SELECTOR, "#bars [role=meter]")
    out = {}
    for meter in meters:
        label_id = meter.get_attribute("aria-labelledby")
        label_text = driver.find_element(By.ID, label_id).text
        assert label_text == meter.get_attribute("data-label").replace("_", " ")
        assert meter.get_attribute("aria-valuemin") == "0" and meter.get_attribute("aria-valuemax") == "1"
        assert meter.get_attribute("aria-valuetext").endswith("%")
        out[meter.get_attribute("data-label")] = float(meter.get_attribute("aria-valuenow"))
    return out


def _submit(driver, text: str) -> None:
    box = driver.find_element(By.ID, "comment")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "score-button").click()


def test_typed_comment_shows_six_bars_matching_the_api(server, browser):
    text = "You stupid idiot, I will kill you"
    browser.get(server.url + "/")
    assert browser.title.startswith("toxic-service")
    _submit(browser, text)
    WebDriverWait(browser, 15).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bars [role=meter]")) == 6)
    shown = _bars(browser)
    api = requests.post(server.url + "/detect-toxic", json={"sequence": text}, timeout=10).json()["prediction"]
    assert list(shown) == list(api)
    for label, value in api.items():
        assert abs(shown[label] - value) < 1e-9, label
    # The drawn width follows the score.
    fill = browser.find_element(By.CSS_SELECTOR, "[data-label=insult] .bar-fill")
    track = browser.find_element(By.CSS_SELECTOR, "[data-label=insult]")
    assert abs(fill.size["width"] / track.size["width"] - api["insult"]) < 0.02
    assert not browser.find_element(By.ID, "error").is_displayed()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))
    # No console errors (a CSP violation would show here).
    logs = browser.get_log("browser") if "get_log" in dir(browser) else []
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs


def test_error_from_the_api_is_shown_clearly(server, browser):
    browser.get(server.url + "/")
    _submit(browser, "x" * 2001)  # over max_text_chars: the API answers 413
    error = WebDriverWait(browser, 15).until(ec.visibility_of_element_located((By.ID, "error")))
    assert "could not score" in error.text.lower() and "2000" in error.text
    assert error.get_attribute("role") == "alert"
    assert not browser.find_element(By.ID, "results").is_displayed()
    browser.save_screenshot(str(SCREENSHOT.with_name("page-error.png")))
