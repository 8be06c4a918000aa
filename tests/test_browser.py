"""End to end in a real browser: Debian's Chromium driven by Playwright loads the page served on
127.0.0.1, uploads a Kodak crop, waits for the result, and checks what a person would see."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from importlib import resources
from pathlib import Path

import pytest

import compressnet

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        pytest.fail("Chromium is missing: .ci/run installs it with apt-get", pytrace=False)
    pytest.skip("Chromium not installed (apt-get install -y chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    import uvicorn

    from compressnet.server.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_upload_a_kodak_crop_and_compare(server_url, tmp_path):
    sample = Path(str(resources.files("compressnet") / "samples" / "kodim23.png"))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server_url)
        page.wait_for_selector("#quality option", state="attached")
        page.select_option("#quality", "1")
        page.set_input_files("#file-input", str(sample))
        page.wait_for_selector("#result", state="visible", timeout=120_000)
        summary = page.text_content("#summary")
        assert "CompressNet" in summary and "bytes" in summary and "bpp" in summary
        cnet_bytes = int(summary.split(": ")[1].split(" bytes")[0].replace(",", ""))
        assert 100 < cnet_bytes < 512 * 384 * 0.15 / 8 * 2
        cards = page.query_selector_all(".card")
        assert [c.get_attribute("data-codec") for c in cards] == \
            ["original", "compressnet", "hevc", "avif", "hevc@1/2", "avif@1/2", "jpeg"]
        for card in cards[2:]:
            stats = card.query_selector(".stats").text_content()
            shown = int(stats.split(" bytes")[0].replace(",", ""))
            fits = card.query_selector(".flag") is None
            assert shown <= cnet_bytes or not fits
        for selector in ("#img-original", "#img-decoded"):
            assert page.eval_on_selector(selector, "img => img.complete && img.naturalWidth") == 512
        drawn = page.eval_on_selector_all(".card canvas", """cs => cs.map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
            return s; })""")
        assert len(drawn) == 7 and all(v > 0 for v in drawn)  # every zoomed crop rendered
        assert page.get_attribute("#dl-cnet", "download") == "kodim23.cnet"
        page.fill("#slider", "80")
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("COMPRESSNET_SCREENSHOTS"):
            shutil.copy(shot, Path(os.environ["COMPRESSNET_SCREENSHOTS"]) / "serve.png")
        page.check("#refine-toggle")  # the same photo again, refined: named, and no larger
        page.evaluate("document.querySelector('#summary').textContent = ''")
        page.set_input_files("#file-input", [])
        page.set_input_files("#file-input", str(sample))
        page.wait_for_function("document.querySelector('#summary').textContent.includes('refined')",
                               timeout=180_000)
        refined = page.text_content("#summary")
        assert "quality 1, refined 10 steps" in refined
        assert int(refined.split(": ")[1].split(" bytes")[0].replace(",", "")) <= cnet_bytes
        cnet = tmp_path / "sample.cnet"  # a .cnet file dropped on the page: preview, then decoded
        cnet.write_bytes(compressnet.load().compress(str(sample), quality=1))
        page.set_input_files("#file-input", str(cnet))
        page.wait_for_function("document.querySelector('#info').textContent.includes('format v9')",
                               timeout=120_000)
        assert page.eval_on_selector("#img-cnet", "img => img.complete && img.naturalWidth") == 512
        assert errors == []
        browser.close()
