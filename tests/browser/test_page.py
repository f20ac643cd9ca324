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


def _type(driver, text: str) -> None:
    """Put `text` in the textarea as typing would, then press Score.

    ChromeDriver's send_keys refuses characters outside the Basic Multilingual Plane (most emoji), so the
    value is set by script and the input event a keystroke would fire is dispatched.
    """
    box = driver.find_element(By.ID, "comment")
    driver.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        box,
        text,
    )
    assert box.get_attribute("value") == text
    driver.find_element(By.ID, "score-button").click()


def _sentence_note(driver) -> str:
    """The note under the bars once the page has its answer from comments:analyze (or has given up on it)."""
    note = WebDriverWait(driver, 15).until(ec.visibility_of_element_located((By.ID, "sentence-note")))
    WebDriverWait(driver, 15).until(lambda d: note.text.strip())
    return note.text


def _shaded(driver, text: str) -> tuple[str, float, str]:
    """Score `text` on the page: the shaded sentence's text, its score, and the whole annotated comment."""
    driver.get(driver.toxic_url + "/")
    _type(driver, text)
    _sentence_note(driver)
    marks = driver.find_elements(By.CSS_SELECTOR, "#annotated mark")
    assert len(marks) == 1, driver.find_element(By.ID, "annotated").get_attribute("innerHTML")
    annotated = driver.find_element(By.ID, "annotated")
    # The whole comment is shown, the shaded sentence in place: textContent is the comment, character for character.
    assert annotated.get_attribute("textContent") == text
    return marks[0].get_attribute("textContent"), float(marks[0].get_attribute("data-score")), annotated


@pytest.fixture
def page(server, browser):
    browser.toxic_url = server.url
    if "get_log" in dir(browser):
        browser.get_log("browser")  # reading empties it: a test sees only its own console entries
    return browser


def _analyze_spans(server, text: str) -> list[dict]:
    body = {"comment": {"text": text}, "requestedAttributes": {"TOXICITY": {}}, "spanAnnotations": True}
    answer = requests.post(server.url + "/v1alpha1/comments:analyze", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["attributeScores"]["TOXICITY"]["spanScores"]


def test_the_insulting_sentence_is_shaded_with_its_score(server, page):
    text = "Thanks for the link. You are an idiot."
    shaded, score, _ = _shaded(page, text)
    assert shaded == "You are an idiot."
    worst = max(_analyze_spans(server, text), key=lambda span: span["score"]["value"])
    assert abs(score - worst["score"]["value"]) < 1e-9 and score >= 0.5
    note = page.find_element(By.ID, "sentence-note").text
    assert f"{score * 100:.1f} %" in note, note
    assert not page.find_element(By.ID, "error").is_displayed()
    page.save_screenshot(str(SCREENSHOT.with_name("page-shaded.png")))
    logs = page.get_log("browser") if "get_log" in dir(page) else []
    assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs


def test_an_emoji_before_the_sentence_does_not_shift_the_shading(server, page):
    # U+1F642 is two UTF-16 code units and one code point: offsets counted in code points (on either
    # side) would shade "ou are an idiot." or " You are an idiot" instead.
    text = "Thanks for the link \U0001f642. You are an idiot."
    spans = _analyze_spans(server, text)
    assert spans[-1]["begin"] == len(text.encode("utf-16-le")) // 2 - len("You are an idiot.")
    shaded, _, _ = _shaded(page, text)
    assert shaded == "You are an idiot."


def test_markup_in_the_comment_is_shown_as_text(page):
    text = "Thanks for the link. You are an <b>idiot</b>."
    shaded, _, annotated = _shaded(page, text)
    assert shaded == "You are an <b>idiot</b>."
    assert not annotated.find_elements(By.TAG_NAME, "b")
    assert "<b>idiot</b>" in annotated.text


def test_a_harmless_comment_is_not_shaded_and_says_its_highest_score(server, page):
    text = "Thanks for the link. Have a nice day."
    page.get(server.url + "/")
    _type(page, text)
    note = _sentence_note(page)
    highest = max(span["score"]["value"] for span in _analyze_spans(server, text))
    assert highest < 0.5
    assert not page.find_elements(By.CSS_SELECTOR, "#annotated mark")
    assert page.find_element(By.ID, "annotated").get_attribute("textContent") == text
    assert f"{highest * 100:.1f} %" in note, note


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, tiny_bundle_dir, tiny_sqlite_path):
    work = tmp_path_factory.mktemp("page-keyed")
    env = gs.base_env(tiny_bundle_dir, tiny_sqlite_path, work, max_text_chars=2000)
    env["TOXIC_API_KEYS_REQUIRED"] = "true"
    srv = gs.start(env, work / "gunicorn.log", workers=1)
    yield srv
    srv.stop()


def test_keys_required_the_page_scores_and_quietly_does_not_shade(keyed_server, browser):
    text = "Thanks for the link. You are an idiot."
    keyless = requests.post(
        keyed_server.url + "/v1alpha1/comments:analyze",
        json={"comment": {"text": text}, "requestedAttributes": {"TOXICITY": {}}, "spanAnnotations": True},
        timeout=10,
    )
    assert keyless.status_code == 403 and keyless.json()["error"]["status"] == "PERMISSION_DENIED"
    browser.get(keyed_server.url + "/")
    _type(browser, text)
    note = _sentence_note(browser)
    assert "api key" in note.lower(), note
    assert len(browser.find_elements(By.CSS_SELECTOR, "#bars [role=meter]")) == 6
    assert not browser.find_elements(By.CSS_SELECTOR, "#annotated mark")
    assert not browser.find_element(By.ID, "annotated").is_displayed()
    assert not browser.find_element(By.ID, "error").is_displayed()
