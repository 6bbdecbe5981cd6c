"""The FHIR client of the hospital information system (integrations/his.py) against the local FHIR stand-in."""

from __future__ import annotations

import pytest
from aiohttp import web

from core.errors import UpstreamError
from integrations.his import HISClient
from tests.his_standin import HISStandIn


def patient(pid: str, name: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"text": name}], "gender": "female"}


@pytest.fixture
async def his():
    server = HISStandIn(page_size=2)
    await server.start()
    yield server
    await server.stop()


async def test_search_follows_next_links_until_the_last_page(his):
    his.add(*(patient(f"p{i}", f"患者{i}") for i in range(5)))
    async with HISClient(his.base_url) as client:
        found = [r["id"] async for r in client.search("Patient", {"_count": "2"})]
    assert found == ["p0", "p1", "p2", "p3", "p4"]
    pages = his.calls_to("/fhir/Patient")
    assert [c.query.get("_offset") for c in pages] == [None, "2", "4"]  # three pages, each asked once
    assert all(c.query["_count"] == "2" for c in pages)


async def test_read_and_create(his):
    his.add(patient("p1", "王芳"))
    async with HISClient(his.base_url + "/") as client:  # a trailing slash changes nothing
        assert (await client.read("Patient", "p1"))["name"] == [{"text": "王芳"}]
        made = await client.create("Appointment", {"resourceType": "Appointment", "status": "proposed",
                                                   "participant": [{"status": "needs-action"}]})
    assert made["id"] and made["status"] == "proposed"
    assert his.resources["Appointment"][made["id"]]["status"] == "proposed"
    [post] = [c for c in his.calls if c.method == "POST"]
    assert post.path == "/fhir/Appointment" and post.json["resourceType"] == "Appointment"


async def test_server_errors_become_upstream_errors_with_the_outcome(his):
    his.fail_next("/fhir/Patient", status=500)
    async with HISClient(his.base_url) as client:
        with pytest.raises(UpstreamError) as failed:
            await client.read("Patient", "nobody")  # 404 with an OperationOutcome
        assert failed.value.details["status"] == 404 and "nobody" in failed.value.details["reason"]
        with pytest.raises(UpstreamError) as failed:
            [r async for r in client.search("Patient")]
        assert failed.value.details["status"] == 500 and failed.value.details["reason"] == "injected failure"
        assert failed.value.to_body()["error"]["code"] == "upstream_error"


async def test_unreachable_server_is_an_upstream_error():
    async with HISClient("http://127.0.0.1:9/fhir") as client:
        with pytest.raises(UpstreamError) as failed:
            await client.read("Patient", "x")
    assert failed.value.message == "无法连接医院信息系统"


@pytest.fixture
async def odd_server():
    """A server whose answers are wrong in the ways a client must not trust: next links elsewhere or in circles,
    HTML instead of FHIR."""
    async def patients(request: web.Request):
        kind = request.query.get("kind")
        if kind == "html":
            return web.Response(text="<html>login</html>", content_type="text/html")
        target = "http://198.51.100.7/fhir/Patient?page=2" if kind == "elsewhere" else str(request.url)
        body = {"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": target}],
                "entry": [{"resource": patient("p1", "甲"), "search": {"mode": "match"}}]}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/fhir/Patient", patients)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/fhir"
    await runner.cleanup()


@pytest.mark.parametrize("kind, message", [("elsewhere", "翻页链接无效"), ("loop", "翻页链接无效"),
                                           ("html", "无法识别的内容")])
async def test_untrustworthy_answers_are_refused(odd_server, kind, message):
    async with HISClient(odd_server) as client:
        with pytest.raises(UpstreamError) as failed:
            [r async for r in client.search("Patient", {"kind": kind})]
    assert message in failed.value.message


async def test_fetch_binary_as_fhir_json_or_raw(his):
    jpeg = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 1000  # several network reads long
    his.add_binary("f006", jpeg)
    async with HISClient(his.base_url) as client:
        assert await client.fetch_binary("Binary/f006") == jpeg
        assert await client.fetch_binary(his.base_url + "/Binary/f006") == jpeg
        with pytest.raises(UpstreamError):
            await client.fetch_binary("http://198.51.100.7/Binary/f006")  # not the HIS: never fetched
