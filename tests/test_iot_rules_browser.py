"""The device-health view in a real browser (Debian's Chromium via Playwright): an agent opens 设备预警, sees the
alert a hot reading raised, follows it to the device and sees its readings charted, its risk and the ticket."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from core.models import Hospital
from monitoring import ingest, rules
from monitoring.ingest import ReadingIn
from repair.models import Device
from tests.console_support import make_console_user, signed_in_page, unexpected_problems
from tests.test_browser_console import PASSWORD, _canvas_ink

HOSTILE = '呼吸机<img src=x onerror="document.title=\'pwned\'">'


async def test_an_agent_follows_an_alert_to_the_device_health_view(serve, settings_for, database_url, browser,
                                                                   tmp_path):
    live = await serve(settings_for(database_url))
    hospital = await Hospital.create(name="市第一人民医院")
    await make_console_user("agent", "li.kefu", PASSWORD, [hospital], name="李客服")
    vent = await Device.create(hospital=hospital, system_number="V-01", nameplate_id="SN1", name=HOSTILE,
                               device_type="ventilator")
    now = datetime.now(timezone.utc)
    history = [ReadingIn(vent.id, "temperature", int((now - timedelta(minutes=90 - i)).timestamp() * 1000),
                         36.0 + (i % 7) * 0.2) for i in range(90)]
    hot = ReadingIn(vent.id, "temperature", int(time.time() * 1000), 49.0)
    await ingest.store([*history, hot])
    await ingest.remember_latest(live.app.ctx.redis, [*history, hot])
    [alert] = await rules.evaluate([hot], redis=live.app.ctx.redis, events=live.app.ctx.events)

    _, page = await signed_in_page(browser, live.url("/console/"), "li.kefu", PASSWORD)
    await page.wait_for_selector("#app-view:not([hidden])")

    await page.click('[data-nav="alerts"]')
    row = f'#alerts-table tr[data-alert="{alert.id}"]'
    await page.wait_for_selector(row)
    text = await page.inner_text(row)
    assert "呼吸机温度过高" in text and "49" in text and HOSTILE in text
    assert await page.locator(f"{row} img").count() == 0

    # A new alert while the list is open appears on it, pushed over the live queue.
    other = await Device.create(hospital=hospital, system_number="V-02", nameplate_id="SN2", name="二号呼吸机",
                                device_type="ventilator")
    readings = [ReadingIn(other.id, r.metric, r.at_ms, r.value) for r in (*history, hot)]
    await ingest.store(readings)
    await ingest.remember_latest(live.app.ctx.redis, readings)
    [second] = await rules.evaluate([readings[-1]], redis=live.app.ctx.redis, events=live.app.ctx.events)
    await page.wait_for_selector(f'#alerts-table tr[data-alert="{second.id}"]')
    assert "二号呼吸机" in await page.inner_text(f'#alerts-table tr[data-alert="{second.id}"]')

    await page.click(f"{row} a[href^='#/devices/']")
    await page.wait_for_selector("#device-risk")
    assert "风险" in await page.inner_text("#device-risk") and "49" in await page.inner_text("#device-risk")
    assert "呼吸机温度过高" in await page.inner_text("#device-alerts")
    await page.wait_for_selector('.chart-card[data-metric="temperature"] canvas')
    assert await _canvas_ink(page, '.chart-card[data-metric="temperature"] canvas', tmp_path / "health.png") > 200
    assert await page.title() == "(1) 设备服务工作台"  # the second alert's preventive ticket, not yet read
    assert unexpected_problems(page.problems) == []
