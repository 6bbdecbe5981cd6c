"""QR labels: signed repair links, WeChat's permanent QR codes (once per scene), the PNG label and the A4 sheet."""

from __future__ import annotations

import io
import time
from urllib.parse import parse_qs, urlparse

import pytest
import zxingcpp
from itsdangerous import TimestampSigner
from PIL import Image
from pypdf import PdfReader

from core.auth import sign_link
from core.errors import Conflict, Forbidden, NotFound, ServiceBusy
from core.settings import Settings
from repair import labels

SETTINGS = Settings(secret_key="label-test-secret", public_base_url="https://repair.example.cn/")
DAY = 24 * 3600


def token_of(url: str) -> str:
    parsed = urlparse(url)
    assert parsed.path == "/h5/repair"
    return parse_qs(parsed.query)["t"][0]


def decoded_qr(image: Image.Image) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]


@pytest.fixture
def clock(monkeypatch):
    """Moves itsdangerous' clock (it signs and checks ages in whole seconds) by ``shift(seconds)``."""
    offset = {"s": 0}
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) + offset["s"])
    return lambda seconds: offset.update(s=seconds)


# -- signed links ------------------------------------------------------------------------------------------------
def test_repair_link_round_trip():
    url = labels.repair_link(SETTINGS, "d:SN0001")
    assert url.startswith("https://repair.example.cn/h5/repair?t=")
    assert labels.read_repair_token(SETTINGS, token_of(url)) == "d:SN0001"
    printed = labels.repair_link(SETTINGS, "g:7", printed=True)
    assert labels.read_repair_token(SETTINGS, token_of(printed)) == "g:7"


def test_a_scan_link_expires_but_a_printed_label_does_not(clock):
    scan, printed = labels.repair_link(SETTINGS, "d:SN0001"), labels.repair_link(SETTINGS, "d:SN0001", printed=True)
    clock(DAY + 5)
    with pytest.raises(Forbidden) as refused:
        labels.read_repair_token(SETTINGS, token_of(scan))
    assert refused.value.code == "link_expired" and "过期" in refused.value.message
    clock(5 * 365 * DAY)  # five years on the device
    assert labels.read_repair_token(SETTINGS, token_of(printed)) == "d:SN0001"
    limited = SETTINGS.with_(label_link_max_age=365 * DAY)
    with pytest.raises(Forbidden, match="过期"):
        labels.read_repair_token(limited, token_of(printed))
    with pytest.raises(Forbidden, match="过期"):  # the caller's own limit wins when given
        labels.read_repair_token(SETTINGS, token_of(printed), max_age=60)


def test_a_scan_link_lives_its_configured_age(clock):
    scan = labels.repair_link(SETTINGS, "d:SN0001")
    clock(DAY - 60)
    assert labels.read_repair_token(SETTINGS, token_of(scan)) == "d:SN0001"
    with pytest.raises(Forbidden, match="过期"):
        labels.read_repair_token(SETTINGS.with_(repair_link_max_age=3600), token_of(scan))


@pytest.mark.parametrize("forge", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # tampered signature
    lambda t: sign_link("another-secret", "repair", {"s": "d:SN0001"}),  # someone else's key
    lambda t: sign_link(SETTINGS.secret_key, "session", {"s": "d:SN0001"}),  # a token for another purpose
    lambda t: sign_link(SETTINGS.secret_key, "repair", {"s": "x:whatever"}),  # signed, but names no scene
    lambda t: sign_link(SETTINGS.secret_key, "repair", {"scene": "d:SN0001"}),
    lambda t: "",
    lambda t: "not-a-token",
], ids=["tampered", "other-key", "other-purpose", "bad-scene", "no-scene", "empty", "garbage"])
def test_forged_repair_tokens_are_refused(forge):
    token = token_of(labels.repair_link(SETTINGS, "d:SN0001"))
    with pytest.raises(Forbidden) as refused:
        labels.read_repair_token(SETTINGS, forge(token))
    assert refused.value.code == "link_invalid" and refused.value.status == 403


@pytest.mark.parametrize("scene", ["", "d:", "x:1", "g:abc", "g:0", "g:99999999999", "d" * 10, "d:" + "9" * 63])
def test_malformed_scenes_are_unknown(scene):
    with pytest.raises(NotFound):
        labels.parse_scene(scene)


# -- data ----------------------------------------------------------------------------------------------------------
async def seed():
    from core.models import Department, Hospital
    from repair.models import Device, DeviceGroup

    hospital = await Hospital.create(name="市第一人民医院")
    lab = await Department.create(hospital=hospital, name="检验科")
    icu = await Department.create(hospital=hospital, name="重症医学科")
    line = await DeviceGroup.create(hospital=hospital, department=lab, name="生化流水线")
    devices = []
    for i in range(13):
        devices.append(await Device.create(
            hospital=hospital, department=lab, system_number=f"LAB{i:04d}", nameplate_id=f"NP-L{i}",
            name="全自动生化分析仪", device_type="analyser", repair_count=i, maintenance_score=90 - i,
            group=line if i < 3 else None))
    await Device.create(hospital=hospital, department=lab, system_number="LABOLD", nameplate_id="NP-OLD",
                        name="旧离心机", device_type="centrifuge", status="retired", group=line,
                        maintenance_score=5)
    vent = await Device.create(hospital=hospital, department=icu, system_number="ICU0001", nameplate_id="NP-V1",
                               name="呼吸机", device_type="ventilator", repair_count=4, maintenance_score=71)
    return {"hospital": hospital, "lab": lab, "icu": icu, "line": line, "devices": devices, "vent": vent}


@pytest.fixture
async def standin():
    from tests.wechat_standin import WeChatStandIn

    wx = WeChatStandIn(app_id="wxlabels0000001", app_secret="labels-secret")
    await wx.start()
    yield wx
    await wx.stop()


@pytest.fixture
async def wechat(standin, tmp_path):
    from core.redis import create_redis
    from integrations.wechat import WeChatClient

    settings = SETTINGS.with_(wechat_app_id="wxlabels0000001", wechat_app_secret="labels-secret",
                              wechat_api_base=standin.base_url)
    redis = create_redis(settings)
    async with WeChatClient(settings, redis) as client:
        yield settings, client
    await redis.aclose()


# -- WeChat's permanent QR codes -------------------------------------------------------------------------------------
async def test_the_wechat_qr_is_created_once_per_scene(db, standin, wechat):
    from repair.models import LabelQr

    settings, client = wechat
    await seed()
    first = await labels.wechat_qr(client, "d:LAB0001")
    again = await labels.wechat_qr(client, "d:LAB0001")
    assert (again.ticket, again.url) == (first.ticket, first.url) and first.url.startswith("http://weixin.qq.com/q/")
    assert [q["action_name"] for q in standin.qrcodes] == ["QR_LIMIT_STR_SCENE"]
    assert standin.qrcodes[0]["action_info"]["scene"]["scene_str"] == "d:LAB0001"
    await labels.wechat_qr(client, "g:1")
    assert len(standin.calls_to("/cgi-bin/qrcode/create")) == 2
    assert await LabelQr.all().count() == 2


async def test_no_permanent_code_is_spent_on_an_unknown_scene(db, standin, wechat):
    from repair.models import LabelQr

    _, client = wechat
    with pytest.raises(NotFound):
        await labels.wechat_qr(client, "d:NOSUCH")
    assert standin.calls_to("/cgi-bin/qrcode/create") == [] and await LabelQr.all().count() == 0


async def test_a_wechat_refusal_stores_nothing(db, standin, wechat):
    from core.errors import WeChatAPIError
    from repair.models import LabelQr

    _, client = wechat
    await seed()
    standin.fail_next("/cgi-bin/qrcode/create", 45009)
    with pytest.raises(WeChatAPIError):
        await labels.wechat_qr(client, "d:LAB0002")
    assert await LabelQr.all().count() == 0
    assert (await labels.wechat_qr(client, "d:LAB0002")).url  # the next try works and is kept


# -- one PNG label -----------------------------------------------------------------------------------------------------
async def test_png_label_without_wechat_encodes_the_signed_repair_link(db):
    data = await seed()
    png = await labels.label_png(SETTINGS, data["devices"][1])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1000, 460)
    (content,) = decoded_qr(image)
    assert labels.read_repair_token(SETTINGS, token_of(content)) == "d:LAB0001"


async def test_png_label_with_wechat_encodes_the_permanent_qr(db, standin, wechat):
    from repair.models import LabelQr

    settings, client = wechat
    data = await seed()
    png = await labels.label_png(settings, data["vent"], wechat=client)
    stored = await LabelQr.get(scene="d:ICU0001")
    assert decoded_qr(Image.open(io.BytesIO(png))) == [stored.url]
    await labels.label_png(settings, "d:ICU0001", wechat=client)  # a reprint
    assert len(standin.calls_to("/cgi-bin/qrcode/create")) == 1


async def test_label_content_names_number_repairs_and_score(db):
    data = await seed()
    device = await labels.label_content(SETTINGS, "d:LAB0004")
    assert (device.hospital, device.department, device.name, device.number) == \
        ("市第一人民医院", "检验科", "全自动生化分析仪", "LAB0004")
    assert (device.repair_count, device.maintenance_score) == (4, 86)
    group = await labels.label_content(SETTINGS, data["line"])
    # The group's score is its weakest device in use (LAB0002: 88); the retired one (5) does not count.
    assert (group.number_caption, group.number, group.maintenance_score) == ("设备组编号", str(data["line"].id), 88)


async def test_no_label_for_a_retired_device(db):
    await seed()
    with pytest.raises(Conflict, match="已停用"):
        await labels.label_png(SETTINGS, "d:LABOLD")


async def test_a_missing_label_font_is_named(db, tmp_path):
    await seed()
    with pytest.raises(ServiceBusy) as missing:
        await labels.label_png(SETTINGS.with_(label_font=str(tmp_path / "none.ttf")), "d:LAB0001")
    assert missing.value.code == "label_font_missing" and "LABEL_FONT" in missing.value.message


# -- the A4 sheet ------------------------------------------------------------------------------------------------------
async def test_department_sheet_lists_every_device_and_group_in_use(db):
    data = await seed()
    pdf = await labels.department_sheet_pdf(SETTINGS, data["hospital"].id, data["lab"].id)
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 2  # 13 devices + 1 group, 12 labels a page
    assert [round(float(v)) for v in reader.pages[0].mediabox[2:]] == [595, 842]  # A4 in points
    text = "\n".join(page.extract_text() for page in reader.pages)
    for i in range(13):
        assert f"LAB{i:04d}" in text
    assert "生化流水线" in text and "扫码报修" in text and "检验科" in text
    assert "LABOLD" not in text and "ICU0001" not in text  # retired; another department
    scenes = set()
    for page in reader.pages:
        for picture in page.images:
            (content,) = decoded_qr(picture.image)
            scenes.add(labels.read_repair_token(SETTINGS, token_of(content)))
    assert scenes == {f"d:LAB{i:04d}" for i in range(13)} | {f"g:{data['line'].id}"}


async def test_hospital_sheet_covers_all_departments(db):
    data = await seed()
    reader = PdfReader(io.BytesIO(await labels.department_sheet_pdf(SETTINGS, data["hospital"].id)))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "ICU0001" in text and "LAB0012" in text and "全院" in text


async def test_sheet_for_what_does_not_exist(db):
    from core.models import Department, Hospital

    data = await seed()
    other = await Hospital.create(name="另一家医院")
    empty = await Department.create(hospital=data["hospital"], name="药剂科")
    with pytest.raises(NotFound, match="医院"):
        await labels.department_sheet_pdf(SETTINGS, 999_999)
    with pytest.raises(NotFound, match="科室"):
        await labels.department_sheet_pdf(SETTINGS, other.id, data["lab"].id)
    with pytest.raises(NotFound) as nothing:
        await labels.department_sheet_pdf(SETTINGS, data["hospital"].id, empty.id)
    assert nothing.value.code == "nothing_to_print"
