"""The live status page in a real headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium): it renders, obeys its strict CSP, and shows a deployment going from
healthy to cooling when its mock starts answering 429.  The screenshot is kept as a test
artefact ($HELIX_ARTIFACTS, default /tmp/helix-artifacts); with HELIX_UPDATE_SCREENSHOT=1
it also replaces docs/status-page.png."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import time

import pytest

from helix.mock import MockProcess
from tests.helpers import ROOT, HelixProcess, free_port

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"


def _missing() -> str | None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        return (f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER}): "
                "apt-get install -y chromium chromium-driver (.ci/run installs them)")
    return None


_N = iter(range(1_000_000))


def chat(port: int, model: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:  # a new prompt each time: the cache (on, for the page's cache panel) must miss
        body = json.dumps({"model": model,
                           "messages": [{"role": "user", "content": f"hi {next(_N)}"}]})
        conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def get(port: int, path: str, accept: str) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"accept": accept})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.fixture()
def browser():
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="helix-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1440,1100"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def text_of(driver, selector: str) -> str:
    # Read in one script call: an element handle kept across calls goes stale
    # when the page re-renders.
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
        selector)


def state_of(driver, deployment: str) -> str | None:
    # The page re-renders the table on every poll, so row elements found one
    # call earlier can be gone the next (a stale element). One script reads
    # the whole table in a single turn of the page's event loop instead.
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('#deployment-table tbody tr'))"
        ".map(r => Array.from(r.querySelectorAll('td')).map(td => td.innerText));")
    for cells in rows or ():
        if cells and cells[0].strip() == deployment:
            return cells[3].strip()
    return None


def test_status_page_shows_a_deployment_cooling_down(browser):
    flaky_port = free_port()
    with MockProcess() as good:
        flaky = MockProcess("--port", str(flaky_port)).start()
        try:
            config = f"""
providers:
  - {{name: primary, type: openai_compatible, base_url: "{good.url}/v1", api_key: sk-a,
     models: [gpt-4o-mini]}}
  - {{name: flaky, type: openai_compatible, base_url: "http://127.0.0.1:{flaky_port}/v1",
     api_key: sk-b, models: [flaky-model]}}
observability:
  metrics: {{enabled: true}}
caching: {{backend: memory}}
rate_limits: {{global: {{requests_per_minute: 100000}}}}
"""
            with HelixProcess(config, workers=2) as hx:
                for _ in range(6):
                    assert chat(hx.port, "gpt-4o-mini") == 200
                    assert chat(hx.port, "flaky-model") == 200
                conn = http.client.HTTPConnection("127.0.0.1", hx.port, timeout=10)
                body = json.dumps({"model": "gpt-4o-mini",
                                   "messages": [{"role": "user", "content": "hi 0"}]})
                conn.request("POST", "/v1/chat/completions", body,
                             {"content-type": "application/json"})
                assert conn.getresponse().status == 200  # the same prompt again: a hit, maybe
                conn.close()

                # JSON stays the default for machines; a browser's Accept gets the page.
                status, headers, body = get(hx.port, "/status", "*/*")
                assert headers["content-type"].startswith("application/json")
                json.loads(body)
                status, headers, body = get(hx.port, "/status", "text/html,*/*;q=0.8")
                assert status == 200 and headers["content-type"].startswith("text/html")
                csp = headers["content-security-policy"]
                assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
                nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
                assert body.count(f'nonce="{nonce}"'.encode()) == 2
                rest = body.replace(b"http://www.w3.org/2000/svg", b"")  # a namespace, no load
                assert b"http://" not in rest and b"https://" not in rest

                browser.get(f"http://127.0.0.1:{hx.port}/ui")
                wait_for(lambda: state_of(browser, "flaky/flaky-model") == "healthy", 20,
                         "the flaky deployment shown healthy")
                assert state_of(browser, "primary/gpt-4o-mini") == "healthy"

                # The flaky mock now answers 429 with a long Retry-After: cooling.
                flaky.stop()
                flaky = MockProcess("--port", str(flaky_port), "--status", "429",
                                    "--retry-after", "120").start()
                assert chat(hx.port, "flaky-model") == 429
                wait_for(lambda: state_of(browser, "flaky/flaky-model") == "cooling", 20,
                         "the flaky deployment shown cooling")
                assert state_of(browser, "primary/gpt-4o-mini") == "healthy"

                page = text_of(browser, "body")
                assert "gpt-4o-mini" in page and "prices as of" in page
                assert "live" in text_of(browser, "#live")
                traffic = text_of(browser, "#traffic")
                assert "flaky-model" in traffic and "gpt-4o-mini" in traffic
                workers = text_of(browser, "#workers")
                assert workers.count("ready") == 2
                problems = [e["message"] for e in browser.get_log("browser")
                            if e["level"] in ("SEVERE", "WARNING")]
                assert not problems, problems  # no CSP violation, no script error

                out = os.environ.get("HELIX_ARTIFACTS", "/tmp/helix-artifacts")
                os.makedirs(out, exist_ok=True)
                shot = os.path.join(out, "status-page.png")
                assert browser.save_screenshot(shot) and os.path.getsize(shot) > 10_000
                if os.environ.get("HELIX_UPDATE_SCREENSHOT") == "1":
                    shutil.copyfile(shot, os.path.join(ROOT, "docs", "status-page.png"))
        finally:
            flaky.stop()
