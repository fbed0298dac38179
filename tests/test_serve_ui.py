"""`audio-r1 ui` end to end: Debian's Chromium, driven by Playwright, uploads a clip and gets an answer.

Never a downloaded browser: Playwright launches /usr/bin/chromium (apt package `chromium`, installed by
scripts/install-system-deps.sh when run as root). Skipped with a reason when it is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from serve_support import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLIP = Path(__file__).resolve().parent.parent / "src" / "audio_r1" / "assets" / "examples" / "pitch_compare.wav"
RUNS = Path(__file__).resolve().parent.parent / "runs"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed "
                                "(/usr/bin/chromium; `apt-get install chromium`, or run scripts/install-system-deps.sh as root)")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    pytest.importorskip("gradio")
    proc = ServerProcess("--max-new-tokens", "48", command="ui", ready_path="/", log_dir=tmp_path_factory.mktemp("ui"))
    yield proc.url
    proc.stop()


def test_upload_ask_and_see_the_answer(page_url, tmp_path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(page_url, wait_until="networkidle")
            assert page.get_by_text("Bundled example clips").count() >= 1
            page.locator("#audio input[type=file]").set_input_files(str(CLIP))
            page.locator("#question textarea").fill("Which note is higher? A. The first note B. The second note")
            budget = page.locator("#budget input[type=number]")
            budget.fill("8")
            budget.press("Enter")
            page.locator("#ask").click()
            page.wait_for_function("document.querySelector('#status').innerText.includes('Done')", timeout=60_000)
            answer = page.locator("#answer textarea").input_value()
            reasoning = page.locator("#reasoning textarea").input_value()
            status = page.locator("#status").inner_text()
            page.wait_for_function("document.querySelector('#claims').innerText.includes('Claims checked')",
                                   timeout=60_000)
            claims = page.locator("#claims").inner_text()
            shot = tmp_path / "ui-screenshot.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert answer  # the budget closed the think block after 8 tokens and the answer followed
    assert reasoning and "8 thinking tokens" in status
    assert "grounded" in claims  # the reply's claims beside the clip's measurements (or: none to check)
    assert shot.stat().st_size > 10_000
    RUNS.mkdir(exist_ok=True)
    shutil.copy(shot, RUNS / "ui-screenshot.png")
