"""QR labels: scenes, signed repair-page links, WeChat's permanent QR codes, printable labels and the scan card.

A label's QR carries one of two things:
- WeChat's permanent parametric QR for the scene (``qrcode/create``, ``QR_LIMIT_STR_SCENE``): scanning it in WeChat
  follows the account and sends us ``subscribe``/``SCAN`` with the scene. Created once per scene (an account has
  100,000) and kept in ``LabelQr``; its ``url`` is the QR's content, so we draw the code ourselves.
- Without WeChat configured, the signed link to the H5 repair page, which works without following the account.

Scenes: ``d:<system_number>`` for a device, ``g:<group_id>`` for a device group.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError

from core.auth import read_link, sign_link
from core.errors import Conflict, Forbidden, NotFound, UpstreamError
from core.models import Department, Hospital
from core.settings import Settings
from repair import label_render
from repair.label_render import LabelContent
from repair.models import Device, DeviceGroup, LabelQr

LINK_PURPOSE = "repair"
REPAIR_PAGE = "/h5/repair"
SCENE_MAX = 64  # WeChat's limit for scene_str
_PG_INT_MAX = 2**31 - 1
STATUS_TEXT = {"in_service": "在用", "under_repair": "维修中", "retired": "已停用"}
UNKNOWN_SCENE_MESSAGE = "未找到该二维码对应的设备"

Target = Device | DeviceGroup


# -- scenes ------------------------------------------------------------------------------------------------------------
def parse_scene(scene: str) -> tuple[str, str]:
    """``("d", system_number)`` or ``("g", group_id)``; anything else is an unknown scene (NotFound)."""
    kind, sep, key = (scene or "").partition(":")
    if not sep or not key or len(scene) > SCENE_MAX:
        raise NotFound(UNKNOWN_SCENE_MESSAGE, code="unknown_scene")
    if kind == "d":
        return kind, key
    if kind == "g" and key.isascii() and key.isdigit() and 0 < int(key) <= _PG_INT_MAX:
        return kind, key
    raise NotFound(UNKNOWN_SCENE_MESSAGE, code="unknown_scene")


async def resolve_scene(scene: str) -> Target:
    """The device or group a scene names, with its hospital and department loaded."""
    kind, key = parse_scene(scene)
    if kind == "d":
        target = await Device.get_or_none(system_number=key).prefetch_related("hospital", "department")
    else:
        target = await DeviceGroup.get_or_none(id=int(key)).prefetch_related("hospital", "department")
    if target is None:
        raise NotFound(UNKNOWN_SCENE_MESSAGE, code="unknown_scene")
    return target


def _refuse_retired(target: Target, doing: str) -> None:
    if isinstance(target, Device) and target.status == "retired":
        raise Conflict(f"设备“{target.name}”（{target.system_number}）已停用，{doing}。如需帮助请回复“转人工”。",
                       code="device_retired")
    if isinstance(target, DeviceGroup) and not target.active:
        raise Conflict(f"设备组“{target.name}”已停用，{doing}。如需帮助请回复“转人工”。", code="group_retired")


# -- signed links to the H5 repair page --------------------------------------------------------------------------------
def repair_link(settings: Settings, scene: str, *, printed: bool = False) -> str:
    """``{PUBLIC_BASE_URL}/h5/repair?t=<token>`` for ``scene``.

    ``printed`` marks a link for a label: it lives ``LABEL_LINK_MAX_AGE`` (default: for ever), while a link sent in
    a scan reply lives ``REPAIR_LINK_MAX_AGE``. The mark is inside the signed data, so it cannot be added later.
    """
    parse_scene(scene)
    data: dict = {"s": scene}
    if printed:
        data["p"] = 1
    token = sign_link(settings.secret_key, LINK_PURPOSE, data)
    return f"{settings.public_base_url.rstrip('/')}{REPAIR_PAGE}?t={token}"


def read_repair_token(settings: Settings, token: str, max_age: int | None = None) -> str:
    """The scene of a repair-link token. Expired → Forbidden ``link_expired``; forged → Forbidden ``link_invalid``.

    Without ``max_age`` the token's own kind decides: printed labels ``LABEL_LINK_MAX_AGE`` (0: no limit), scan
    replies ``REPAIR_LINK_MAX_AGE``.
    """
    if not token or not isinstance(token, str):
        raise Forbidden("链接无效", code="link_invalid")
    if max_age is not None:
        data = read_link(settings.secret_key, LINK_PURPOSE, token, max_age=max_age)
    else:
        label_age = settings.label_link_max_age
        longest = max(label_age, settings.repair_link_max_age) if label_age > 0 else None
        data = read_link(settings.secret_key, LINK_PURPOSE, token, max_age=longest)
        if not (isinstance(data, dict) and data.get("p")):
            data = read_link(settings.secret_key, LINK_PURPOSE, token, max_age=settings.repair_link_max_age)
    scene = data.get("s") if isinstance(data, dict) else None
    try:
        parse_scene(scene if isinstance(scene, str) else "")
    except NotFound:
        raise Forbidden("链接无效", code="link_invalid") from None
    return scene


# -- WeChat's permanent QR codes ---------------------------------------------------------------------------------------
async def wechat_qr(client, scene: str) -> LabelQr:
    """The scene's permanent WeChat QR code: created at WeChat on first use, then read from ``LabelQr``.

    ``client`` is an ``integrations.wechat.WeChatClient``.
    """
    existing = await LabelQr.get_or_none(scene=scene)
    if existing is not None:
        return existing
    await resolve_scene(scene)  # never spend one of the 100,000 codes on a scene that names nothing
    answer = await client.create_qrcode(scene, permanent=True)
    if not answer.get("url"):
        raise UpstreamError("微信未返回二维码内容，请稍后再试")
    try:
        return await LabelQr.create(scene=scene, ticket=answer["ticket"], url=answer["url"])
    except IntegrityError:
        # Another worker stored it meanwhile; WeChat answers the same permanent code for the same scene_str.
        return await LabelQr.get(scene=scene)


def _wechat_configured(settings: Settings, client) -> bool:
    return client is not None and bool(settings.wechat_app_id and settings.wechat_app_secret)


async def _qr_data(settings: Settings, scene: str, client, known: dict[str, str]) -> str:
    if scene in known:
        return known[scene]
    if _wechat_configured(settings, client):
        return (await wechat_qr(client, scene)).url
    return repair_link(settings, scene, printed=True)


# -- label content -----------------------------------------------------------------------------------------------------
async def _group_scores(group_ids: list[int]) -> dict[int, int]:
    """A group's maintenance score: its weakest device in use (a line stops when one analyser does)."""
    scores: dict[int, int] = {}
    if not group_ids:
        return scores
    rows = await Device.filter(group_id__in=group_ids).exclude(status="retired").values_list(
        "group_id", "maintenance_score")
    for group_id, score in rows:
        scores[group_id] = min(score, scores.get(group_id, score))
    return scores


async def _contents(settings: Settings, targets: list[Target], client) -> list[LabelContent]:
    scenes = [t.scene for t in targets]
    known = dict(await LabelQr.filter(scene__in=scenes).values_list("scene", "url")) if scenes else {}
    scores = await _group_scores([t.id for t in targets if isinstance(t, DeviceGroup)])
    contents = []
    for target in targets:
        hospital = target.hospital.name
        department = target.department.name if target.department else ""
        qr_data = await _qr_data(settings, target.scene, client, known)
        if isinstance(target, Device):
            contents.append(LabelContent(target.scene, qr_data, hospital, department, target.name, "系统编号",
                                         target.system_number, target.repair_count, target.maintenance_score))
        else:
            contents.append(LabelContent(target.scene, qr_data, hospital, department, target.name, "设备组编号",
                                         str(target.id), target.repair_count, scores.get(target.id)))
    return contents


async def label_content(settings: Settings, target: Target | str, *, wechat=None) -> LabelContent:
    """What one label shows. ``target`` is a device, a group or a scene; ``wechat`` a WeChatClient (optional)."""
    resolved = await resolve_scene(target if isinstance(target, str) else target.scene)
    _refuse_retired(resolved, "不能打印标签")
    return (await _contents(settings, [resolved], wechat))[0]


async def label_png(settings: Settings, target: Target | str, *, wechat=None) -> bytes:
    """One printable label as PNG. With ``wechat`` (and WeChat configured) the QR is the account's permanent
    parametric code; otherwise the signed link to the repair page."""
    content = await label_content(settings, target, wechat=wechat)
    return await asyncio.to_thread(label_render.render_png, content, font_path=settings.label_font)


async def department_sheet_pdf(settings: Settings, hospital_id: int, department_id: int | None = None, *,
                               wechat=None) -> bytes:
    """An A4 PDF of labels for every device and group in use in a department (or the whole hospital)."""
    hospital = await Hospital.get_or_none(id=hospital_id)
    if hospital is None:
        raise NotFound("未找到该医院", code="hospital_not_found")
    department = None
    if department_id is not None:
        department = await Department.get_or_none(id=department_id, hospital_id=hospital_id)
        if department is None:
            raise NotFound("该医院没有这个科室", code="department_not_found")
    where: dict = {"hospital_id": hospital_id}
    if department is not None:
        where["department_id"] = department.id
    devices = await Device.filter(**where).exclude(status="retired").order_by("system_number").prefetch_related(
        "hospital", "department")
    groups = await DeviceGroup.filter(active=True, **where).order_by("id").prefetch_related("hospital", "department")
    targets: list[Target] = [*devices, *groups]
    if not targets:
        raise NotFound("没有可打印标签的设备", code="nothing_to_print")
    contents = await _contents(settings, targets, wechat)
    title = f"{hospital.name} {department.name if department else '全院'} 设备报修二维码"
    return await asyncio.to_thread(label_render.render_sheet_pdf, title, contents)


# -- the card a scan answers with --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanCard:
    scene: str
    title: str
    description: str
    url: str  # the repair page, signed and expiring (REPAIR_LINK_MAX_AGE)


async def scan_card(settings: Settings, scene: str) -> ScanCard:
    """The card for a scanned label. Unknown scene → NotFound; a retired device or dissolved group → Conflict."""
    target = await resolve_scene(scene)
    _refuse_retired(target, "无法扫码报修")
    place = " · ".join(p for p in (target.hospital.name, target.department.name if target.department else "") if p)
    if isinstance(target, Device):
        title = f"{target.name} {target.system_number}"
        state = f"状态：{STATUS_TEXT.get(target.status, target.status)}"
        score = str(target.maintenance_score)
    else:
        members = await Device.filter(group_id=target.id).exclude(status="retired").count()
        title = f"{target.name}（设备组 {target.id}）"
        state = f"设备组：{members} 台设备"
        group_score = (await _group_scores([target.id])).get(target.id)
        score = "—" if group_score is None else str(group_score)
    description = "\n".join([place, state, f"维修次数：{target.repair_count}　维护评分：{score}", "点击报修 ›"])
    return ScanCard(scene=target.scene, title=title, description=description, url=repair_link(settings, scene))
