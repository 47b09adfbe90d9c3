"""The service's page in headless Chromium: upload a recording, watch its emotion timeline fill.

Needs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver) and
the Python `selenium` package; nothing downloads a browser (selenium's manager is bypassed by
giving both paths). Skipped, saying which, when they are absent.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import soundfile as sf

from tests.serve.conftest import speech

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file() or not CHROMEDRIVER.is_file(),
                       reason="needs Debian chromium + chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver): "
                              "apt-get install -y chromium chromium-driver"),
]


@pytest.fixture(scope="module")
def server(tiny_predictor):
    """The service on a free loopback port (uvicorn in a thread); yields (base URL, app)."""
    from convmem.serve.app import BackgroundServer, create_app
    from convmem.serve.sessions import ServeConfig

    app = create_app(lambda: tiny_predictor, ServeConfig(max_sessions=2))
    srv = BackgroundServer(app, ws_max_size=8 * 1024 * 1024)
    yield srv.url, app
    srv.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs the `selenium` Python package")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    try:
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    except Exception as exc:  # a chromium that cannot start here (no display libs, ...)
        pytest.skip(f"headless chromium did not start: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
    except Exception:
        status = driver.find_element("id", "status").text
        logs = [e["message"] for e in driver.get_log("browser")] if hasattr(driver, "get_log") else []
        pytest.fail(f"timed out waiting for {what}; page status: {status!r}; console: {logs[-5:]}")


def test_uploaded_file_fills_the_timeline(server, browser, tmp_path):
    url, app = server
    wave, sr, clips = speech(2)
    path = tmp_path / "two_sentences.wav"
    sf.write(path, wave, sr, subtype="PCM_16")  # 22.05 kHz: the page must resample it to 16 kHz

    browser.get(url + "/")
    _wait(browser, lambda d: d.find_element("id", "status").get_attribute("data-state") == "idle", 20, "page ready")
    assert browser.find_element("id", "mic").is_displayed()
    browser.find_element("id", "file").send_keys(str(path))
    _wait(browser, lambda d: d.find_element("id", "status").get_attribute("data-state") in ("done", "error"), 60,
          "the session to end")
    status = browser.find_element("id", "status").text
    assert status.startswith("done"), status
    rows = browser.find_elements("css selector", "#utterances li.utt")
    assert len(rows) == len(clips), f"{len(rows)} utterances shown for {len(clips)} spoken sentences"
    labels = {"neu", "hap", "sad", "ang"}
    assert all(r.get_attribute("data-emotion") in labels for r in rows)
    segments = browser.find_elements("css selector", "#bar .seg")
    assert len(segments) == len(clips)
    # the server saw the whole recording at 16 kHz, and dropped the session afterwards
    assert f"{wave.size / sr:.1f} s" in status
    assert len(app.state.service.registry) == 0


def test_microphone_streams_from_a_fake_device(server, browser):
    """Chromium's fake capture device (a beep) goes through the worklet and a whole session."""
    url, app = server
    browser.get(url + "/")
    _wait(browser, lambda d: d.find_element("id", "status").get_attribute("data-state") == "idle", 20, "page ready")
    browser.find_element("id", "mic").click()
    _wait(browser, lambda d: d.find_element("id", "status").text.startswith("session "), 20, "the mic session")
    time.sleep(1.5)
    assert len(app.state.service.registry) == 1
    browser.find_element("id", "stop").click()
    _wait(browser, lambda d: d.find_element("id", "status").get_attribute("data-state") in ("done", "error"), 30,
          "the mic session to end")
    status = browser.find_element("id", "status").text
    assert status.startswith("done"), status
    seconds = float(status.split(",")[-1].split()[0])
    assert 0.5 < seconds < 10, f"{seconds} s of microphone audio reached the server"

