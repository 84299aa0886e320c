"""The browser demo: a person types a prompt into the page served by the private Apache and
watches the tokens arrive. Driven in headless Chromium (Debian's chromium + chromium-driver)."""

import contextlib
import shutil
import time
from pathlib import Path

import pytest

from harness import REPO, Apache, Daemon, MockLLM, Redis

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

# scripts/install-deps.sh installs chromium, chromium-driver and selenium; no silent skip.
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@contextlib.contextmanager
def serving(apache, daemon):
    """The daemon, then Apache in front of it; both stopped at the end, even after a failed start."""
    try:
        daemon.start()
        apache.start()
        yield
    finally:
        apache.cleanup()
        daemon.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, module_path):
    mock = MockLLM(tmp_path_factory.mktemp("demo-llm"), chunk_count=8, chunk_delay_ms=30).start()
    redis = Redis(tmp_path_factory.mktemp("demo-redis")).start()
    apache = Apache("prefork", workers=4, module=module_path, docroot_src=REPO / "demo",
                    conf=['SetEnv HANDOFF_SOCKET "{run}/handoffd.sock"', "SetEnv HANDOFF_RESUMABLE 1"])
    daemon = Daemon(apache.run_dir / "handoffd.sock", "--openai-base-url", mock.url, "--redis-url", redis.url,
                    "--upstream-ca-file", mock.cert_path, mock_messages=6, mock_interval_ms=150)
    try:
        with serving(apache, daemon):
            yield apache
    finally:
        mock.stop()
        redis.stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def ask(browser, demo, prompt, backend):
    browser.get(f"http://127.0.0.1:{demo.port}/")
    box = browser.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(prompt)
    Select(browser.find_element(By.ID, "backend")).select_by_value(backend)
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error", "truncated"))
    return (browser.find_element(By.ID, "output").text,
            browser.find_element(By.ID, "status").get_attribute("data-state"))


def test_typed_prompt_streams_tokens_from_the_builtin_mock(browser, demo):
    text, state = ask(browser, demo, "Tell me about sockets", "mock")
    assert state == "done"
    assert text.startswith('Mock message 1 of 6 for user demo-user about "Tell me about sockets".')
    assert "Mock message 6 of 6" in text


def test_typed_prompt_streams_tokens_from_the_openai_upstream(browser, demo):
    text, state = ask(browser, demo, "Hello there", "openai")
    assert state == "done"
    assert text == "".join(f"Mock token {i} " for i in range(1, 9))


def test_tokens_appear_while_the_stream_is_running(browser, demo):
    """The page shows partial text before the stream ends: the tokens really stream."""
    browser.get(f"http://127.0.0.1:{demo.port}/")
    browser.find_element(By.ID, "prompt").send_keys("Stream slowly")
    browser.find_element(By.ID, "send").click()
    # The stream takes 6 x 150 ms; look often, so the first token is seen well before the last.
    WebDriverWait(browser, 10, poll_frequency=0.05).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "output"), "Mock message 1"))
    partial = browser.find_element(By.ID, "output").text
    assert "Mock message 6 of 6" not in partial
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "done")


EXPECTED_MOCK = "".join(f'Mock message {i} of 6 for user demo-user about "Keep going". ' for i in range(1, 7))


def test_a_dropped_connection_resumes_where_it_was(browser, demo):
    """"Drop connection" cuts the stream mid-answer (as a phone losing Wi-Fi would); the page
    reconnects with the last event id (EventSource, Last-Event-ID) and shows every token once."""
    browser.get(f"http://127.0.0.1:{demo.port}/")
    browser.find_element(By.ID, "prompt").send_keys("Keep going")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 10, poll_frequency=0.05).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "output"), "Mock message 2"))
    browser.find_element(By.ID, "drop").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("data-state") == "done", status.text
    assert "resumed 1×" in status.text
    assert browser.find_element(By.ID, "output").text.strip() == EXPECTED_MOCK.strip()


def test_a_second_tab_follows_the_same_answer(browser, demo):
    browser.get(f"http://127.0.0.1:{demo.port}/")
    browser.find_element(By.ID, "prompt").send_keys("Keep going")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "follow").is_displayed())
    link = browser.find_element(By.ID, "follow-link").get_attribute("href")
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        browser.get(link)
        WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
        assert browser.find_element(By.ID, "status").get_attribute("data-state") == "done"
        followed = browser.find_element(By.ID, "output").text
    finally:
        browser.close()
        browser.switch_to.window(first)
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "done")
    assert followed.strip() == browser.find_element(By.ID, "output").text.strip() == EXPECTED_MOCK.strip()


@pytest.fixture(scope="module")
def panel(module_path):
    """The demo as `make demo` runs it: words from the mock, mod_status and /metrics for the panel."""
    from demo import status_panel_conf
    from harness import free_port
    metrics_port = free_port()
    apache = Apache("prefork", workers=8, module=module_path, docroot_src=REPO / "demo",
                    conf=['SetEnv HANDOFF_SOCKET "{run}/handoffd.sock"', *status_panel_conf(metrics_port)])
    daemon = Daemon(apache.run_dir / "handoffd.sock", "--mock-text", "words", "--metrics-address", f"127.0.0.1:{metrics_port}",
                    mock_messages=24, mock_interval_ms=150)
    with serving(apache, daemon):
        yield apache


def test_the_panel_shows_apache_free_while_the_daemon_holds_a_burst(browser, panel, tmp_path):
    """A burst of 250 streams started from the page: the panel shows the daemon holding them
    while Apache's workers stay free. The screenshot is kept for a person to look at."""
    browser.set_window_size(1000, 1100)
    browser.get(f"http://127.0.0.1:{panel.port}/?burst=250")
    browser.find_element(By.ID, "burst").click()
    WebDriverWait(browser, 20, poll_frequency=0.1).until(
        lambda d: int(d.find_element(By.ID, "daemon-streams").text or 0) >= 200)
    time.sleep(0.7)   # past the hand-over itself, which keeps every worker busy for a moment
    shot = tmp_path / "demo-panel.png"
    browser.save_screenshot(str(shot))
    busy = browser.find_element(By.ID, "apache-busy").text
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "burst-status").get_attribute("data-state") in ("done", "error"))
    report = browser.find_element(By.ID, "burst-status")
    assert report.get_attribute("data-state") == "done", report.text
    assert int(report.get_attribute("data-completed")) == 250, report.text
    assert int(report.get_attribute("data-peak-streams")) >= 200, report.text
    assert int(report.get_attribute("data-peak-workers")) <= 4, report.text   # the burst script, the panel, a handoff or two
    assert int(busy.split(" / ")[0]) <= 4 and busy.endswith("/ 8"), busy
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(shot, Path("/tmp") / "handoff-demo-panel.png")


def test_the_mock_speaks_in_words(browser, panel):
    text, state = ask(browser, panel, "Why?", "mock")
    assert state == "done"
    assert text.startswith("Handing the socket over is the whole trick.")

