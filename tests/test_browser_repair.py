"""The repair page in a real browser: headless Chromium (Debian's, driven by Playwright) on a phone-sized screen
reports a fault with a photo against the live server, then opens the ticket page.

Chromium comes from the system (``bin/test`` installs it through ``bin/_system.sh``); Playwright's own browser download is never used.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from repair.models import Ticket, TicketAttachment
from tests.conftest import REQUIRE_SERVICES
from tests.h5_support import make_world, png_bytes, repair_path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0 Mobile Safari/537.36")


def _need_browser():
    problem = None
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        problem, async_playwright = "playwright is not installed (pip install -r requirements-dev.txt)", None
    if problem is None and not CHROMIUM.exists():
        problem = f"Chromium is not installed at {CHROMIUM} (bin/test installs it with apt-get when run as root)"
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(problem + " (REQUIRE_SERVICES=1)")
        pytest.skip(problem)
    return async_playwright


async def image_loaded(page, selector: str, timeout: float = 5.0) -> None:
    """Wait until an image has decoded (polled from here: the page's CSP rightly forbids Playwright's eval)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await page.locator(selector).first.evaluate("img => img.complete && img.naturalWidth > 0"):
        assert loop.time() < deadline, f"{selector} did not load"
        await asyncio.sleep(0.05)


@pytest.fixture
async def phone():
    """A page in headless Chromium the size of a phone; records script errors, CSP violations and failed requests."""
    async_playwright = _need_browser()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                            is_mobile=True, has_touch=True, locale="zh-CN", user_agent=PHONE_UA)
        page = await context.new_page()
        page.problems = []
        page.on("pageerror", lambda exc: page.problems.append(f"script error: {exc}"))
        page.on("console", lambda msg: page.problems.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("response", lambda r: page.problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
        try:
            yield page
        finally:
            await browser.close()


async def test_report_a_fault_with_a_photo_from_a_phone(serve, settings_for, database_url, phone, tmp_path):
    live = await serve(settings_for(database_url))
    await make_world()
    page = phone

    await page.goto(live.url(repair_path(live.app.ctx.settings, "d:D0001")))
    assert await page.inner_text(".device-name") == "呼吸机"

    # The phone number is checked before anything is sent.
    await page.fill("#description", "开机报警 E-05，无法送气")
    await page.click("#submit-btn")
    assert "手机号" in await page.inner_text("#form-error")
    assert await Ticket.all().count() == 0

    await page.set_input_files("#photo-input", files=[
        {"name": "fault.png", "mimeType": "image/png", "buffer": png_bytes((640, 480), "#d94f4f")}])
    await page.wait_for_selector(".tile-preview img")
    await page.fill("#reporter-name", "王护士")
    await page.fill("#reporter-phone", "13812345678")
    form_shot = tmp_path / "repair-form.png"
    await page.screenshot(path=str(form_shot), full_page=True)

    await page.click("#submit-btn")
    await page.wait_for_selector("#success:not([hidden])")
    ticket = await Ticket.get()
    assert await page.inner_text("#success-text") == f"报修成功，工单号 {ticket.number}"
    assert await TicketAttachment.filter(ticket=ticket, kind="photo").count() == 1
    done_shot = tmp_path / "repair-done.png"
    await page.screenshot(path=str(done_shot), full_page=True)

    # The browser that reported may follow the link to its ticket, photo included.
    await page.click("#ticket-link")
    await page.wait_for_selector(".timeline")
    assert await page.inner_text(".ticket-number") == ticket.number
    assert "新工单" in await page.inner_text(".timeline")
    await image_loaded(page, ".tile-photo img")
    ticket_shot = tmp_path / "ticket.png"
    await page.screenshot(path=str(ticket_shot), full_page=True)

    for shot in (form_shot, done_shot, ticket_shot):
        assert shot.stat().st_size > 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.problems == []
