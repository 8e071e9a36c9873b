"""The console in a real browser (Playwright driving the system Chromium, no browser download): create a project
from the demo documents, start a run on the tiny model and watch it finish, open the ladder, ask a question in
the playground, correct an answer, approve the correction in the review queue; both languages; screenshots
checked non-blank; no console error on the way."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import free_port, require_program
from test_console_api import DEMO_DOCS, tiny_overrides
from verticalize.console import create_console_app


@pytest.fixture()
def console_url(tmp_path: Path):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_console_app(tmp_path / "projects"), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


def assert_not_blank(png: Path) -> None:
    from PIL import Image, ImageStat

    image = Image.open(png).convert("L")
    assert image.size[0] > 300 and image.size[1] > 200
    assert ImageStat.Stat(image).stddev[0] > 8, f"{png} looks blank"
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8, f"{png} has almost no colours"


def test_the_whole_loop_in_chromium(console_url: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = require_program("chromium")
    errors: list[str] = []
    shots = tmp_path / "shots"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(locale="en-US", viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(console_url)
        expect(page.locator("html")).to_have_attribute("lang", "en")

        # 1. a project from the demo folder; its manifest file by file
        page.click("#nav-projects")
        page.fill("#project-name", "bank")
        page.fill("#project-folder", str(DEMO_DOCS))
        page.click("#create-project")
        manifest = page.locator("#manifest-table")
        expect(manifest).to_contain_text("hbb_credit_card_rules_zh.md", timeout=60_000)
        expect(manifest).to_contain_text("ok")
        page.screenshot(path=str(shots / "1-project.png"), full_page=True)

        # 2. a run, watched live until it is done
        page.fill("#run-overrides", "\n".join(tiny_overrides(tiny_model_dir)))
        page.click("#start-run")
        expect(page.locator("#run-status")).to_have_attribute("data-status", "done", timeout=600_000)
        for stage in ("ingest", "kb", "data", "train", "eval", "report"):
            expect(page.locator(f'#stage-list li[data-stage="{stage}"]')).to_be_visible()
        expect(page.locator("#run-log")).to_contain_text("train")
        page.screenshot(path=str(shots / "2-run.png"), full_page=True)

        # 3. the ladder and a drill-down
        page.click("#open-ladder")
        expect(page.locator("#ladder-table")).to_contain_text("peft+rag", timeout=30_000)
        expect(page.locator("#recommendation")).not_to_be_empty()
        page.locator("#questions-table button.question-toggle").first.click()
        expect(page.locator("#questions-table .rung-answer").first).to_be_visible()
        page.screenshot(path=str(shots / "3-ladder.png"), full_page=True)

        # 4. the playground: every rung at once; a correction of the adapter's answer
        page.click("#nav-playground")
        page.fill("#playground-question", "What is the annual fee of the Classic card?")
        page.click("#ask")
        expect(page.locator("#answers article.answer")).to_have_count(4, timeout=120_000)
        card = page.locator('#answers article.answer[data-rung="peft"]')
        card.locator("textarea.correction").fill("100 yuan a year")
        card.locator("button.send-correction").click()
        expect(card.locator(".feedback-status")).not_to_be_empty(timeout=30_000)
        page.screenshot(path=str(shots / "4-playground.png"), full_page=True)

        # 5. the review queue: approve the correction
        page.click("#nav-review")
        row = page.locator("#review-table tbody tr").first
        expect(row).to_contain_text("What is the annual fee of the Classic card?", timeout=30_000)
        expect(row.locator("textarea.review-correction")).to_have_value("100 yuan a year")
        row.locator("button.approve").click()
        expect(page.locator("#review-status")).to_contain_text("approved", timeout=30_000)
        page.screenshot(path=str(shots / "5-review.png"), full_page=True)

        # accessibility basics: every form control is labelled, every button has a name
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
            .map(e => e.id || e.name || e.outerHTML.slice(0, 80))""")
        assert unlabelled == []
        nameless = page.evaluate("""() => [...document.querySelectorAll('button')]
            .filter(b => !(b.textContent.trim() || b.getAttribute('aria-label'))).map(b => b.outerHTML.slice(0, 80))""")
        assert nameless == []

        # the other language, everywhere
        page.select_option("#lang", "zh")
        expect(page.locator("html")).to_have_attribute("lang", "zh")
        expect(page.locator("#nav-review")).not_to_have_text("Review")
        page.screenshot(path=str(shots / "6-zh.png"), full_page=True)
        browser.close()

    for png in sorted(shots.glob("*.png")):
        assert_not_blank(png)
    assert not errors, errors
