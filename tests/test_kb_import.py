"""Knowledge-base import and export: the exact JSON shape, CSV, a per-row report, nothing stored from a bad file."""

from __future__ import annotations

import json

from knowledge.entries import current_version, export_entries, import_entries
from knowledge.models import KBEntry

ENTRY = {"id": "vent-e05", "device_type": "ventilator", "question": "呼吸机报警E-05怎么办",
         "variants": ["呼吸机E05报警", "呼吸机显示E-05"], "answer": "检查管路是否漏气……", "tier": "basic",
         "docs": [{"title": "V60 手册 5.2 报警", "url": "/kb/docs/v60#5.2"}],
         "videos": [{"title": "呼吸机管路检查", "url": "/kb/videos/v60-tubing"}]}


async def test_json_import_then_reimport_updates_by_id(db):
    report = await import_entries(json.dumps([ENTRY], ensure_ascii=False).encode(), "kb.json")
    assert report.accepted and (report.created, report.updated) == (1, 0)
    assert (await current_version())[0] == 1
    changed = dict(ENTRY, answer="先确认氧源压力……", variants=["E05"])
    report = await import_entries(json.dumps([changed], ensure_ascii=False).encode(), "kb.json")
    assert (report.created, report.updated) == (0, 1)
    stored = await KBEntry.get(id="vent-e05")
    assert (stored.answer, stored.variants) == ("先确认氧源压力……", ["E05"])
    assert (await current_version())[0] == 2
    exported = json.loads(await export_entries("json"))
    assert exported == [dict(changed)]


async def test_a_file_with_bad_rows_reports_each_and_stores_nothing(db):
    rows = [ENTRY, dict(ENTRY, id="x2", question=""), dict(ENTRY, id="x3", tier="expert"), dict(ENTRY),
            dict(ENTRY, id="x4", docs=[{"title": "no url"}])]
    report = await import_entries(json.dumps(rows, ensure_ascii=False).encode(), "kb.json")
    assert not report.accepted
    text = report.text()
    assert "未保存任何条目" in text and "question 为空" in text and "tier 须为" in text and "title 和 url" in text
    assert "id 在文件中重复" in text
    assert await KBEntry.all().count() == 0 and (await current_version())[0] == 0


async def test_csv_round_trip(db):
    await import_entries(json.dumps([ENTRY], ensure_ascii=False).encode(), "kb.json")
    csv_bytes = await export_entries("csv")
    await KBEntry.all().delete()
    report = await import_entries(csv_bytes, "kb.csv")
    assert report.accepted
    stored = await KBEntry.get(id="vent-e05")
    assert stored.variants == ENTRY["variants"] and stored.docs == ENTRY["docs"] and stored.videos == ENTRY["videos"]


async def test_malformed_files_are_refused(db):
    for data, name in ((b"{not json", "kb.json"), (b'{"id": 1}', "kb.json"), (b"\xff\xfe\x00", "kb.json"),
                       (b"id,question\n1,q\n", "kb.csv"), (b"[]", "kb.json")):
        report = await import_entries(data, name)
        assert not report.accepted and report.rows, name
    assert await KBEntry.all().count() == 0


async def test_admins_import_and_export_over_the_api(serve, settings_for, database_url):
    import aiohttp

    from core import people
    from core.models import User

    live = await serve(settings_for(database_url))
    admin = await User.create(name="管理员", role="admin", openid="oAdmin")
    staff = await User.create(name="护士", role="staff", openid="oStaff")

    def form(data: bytes, name: str) -> aiohttp.FormData:
        f = aiohttp.FormData()
        f.add_field("file", data, filename=name, content_type="application/json")
        return f

    def auth(user):
        return {"Authorization": f"Bearer {people.session_token(live.app.ctx.settings, user)}"}

    good = json.dumps([ENTRY], ensure_ascii=False).encode()
    status, _, _ = await live.request("POST", "/mp/v1/admin/kb/import", data=form(good, "kb.json"),
                                      headers=auth(staff))
    assert status == 403
    status, _, body = await live.request("POST", "/mp/v1/admin/kb/import", data=form(b"[{}]", "kb.json"),
                                         headers=auth(admin))
    assert status == 422 and json.loads(body)["error"]["details"]["rows"]
    status, _, body = await live.request("POST", "/mp/v1/admin/kb/import", data=form(good, "kb.json"),
                                         headers=auth(admin))
    assert (status, json.loads(body)["created"]) == (200, 1)
    assert [e.name for e in await live.app.ctx.events.read_after("0-0")] == ["kb.changed"]
    status, _, body = await live.request("GET", "/mp/v1/admin/kb/export", params={"format": "json"},
                                         headers=auth(admin))
    assert status == 200 and json.loads(body)[0]["id"] == "vent-e05"
