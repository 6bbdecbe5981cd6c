"""Backup reporting when the label is gone: find the hospital by name, then (for its own staff, on site) its devices."""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from core.errors import Forbidden, NotFound, Unprocessable
from core.models import Hospital, User
from repair.models import Device

# Words every hospital name has: scoring them would make "人民医院" match half the city.
_GENERIC = ("医院", "人民", "附属", "第")
MIN_SCORE = 70
NEARBY_METRES = 3000.0  # "on site": a campus and its car park, with GPS error to spare


def normalise(text: str) -> str:
    """Full-width → half-width, case folded, spaces and punctuation dropped."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return "".join(ch for ch in text if ch.isalnum())


def _core(text: str) -> str:
    core = normalise(text)
    for word in _GENERIC:
        core = core.replace(word, "")
    return core


@dataclass(frozen=True)
class HospitalMatch:
    hospital: Hospital
    score: float


async def search_hospitals(query: str, limit: int = 5) -> list[HospitalMatch]:
    if not normalise(query):
        raise Unprocessable("请输入医院名称", code="empty_query")
    # A query of generic words only ("人民医院") is compared whole; anything else by its distinctive part.
    key = _core if _core(query) else normalise
    q = key(query)
    hospitals = await Hospital.all()
    choices: dict[tuple[int, int], str] = {}
    for h in hospitals:
        names = [h.name, *(a for a in h.aliases.replace("，", ",").split(",") if a.strip())]
        for i, name in enumerate(names):
            choices[(h.id, i)] = key(name)
    best: dict[int, float] = {}
    for _, score, key in process.extract(q, choices, scorer=fuzz.WRatio, limit=limit * 4, score_cutoff=MIN_SCORE):
        best[key[0]] = max(best.get(key[0], 0), score)
    by_id = {h.id: h for h in hospitals}
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], by_id[kv[0]].name))[:limit]
    return [HospitalMatch(by_id[i], round(s, 1)) for i, s in ranked]


def distance_metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


async def may_see_hospital(user: User, hospital: Hospital) -> bool:
    if user.role == "admin":
        return True
    if user.hospital_id == hospital.id:
        return True
    if user.role == "agent":
        return await user.served_hospitals.filter(id=hospital.id).exists()
    return False


async def hospital_devices_for(user: User, hospital_id: int, *, latitude: float | None = None,
                               longitude: float | None = None) -> list[Device]:
    """The hospital's devices to choose from: only for people bound to it, and only on site when a location is given."""
    hospital = await Hospital.get_or_none(id=hospital_id)
    if hospital is None:
        raise NotFound("医院不存在", code="hospital_not_found")
    if not await may_see_hospital(user, hospital):
        raise Forbidden("您尚未绑定该医院，无法查看其设备。请先用管理员提供的邀请码绑定。", code="not_bound_to_hospital")
    if latitude is not None and longitude is not None and hospital.latitude is not None \
            and hospital.longitude is not None:
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise Unprocessable("位置信息无效", code="bad_location")
        if distance_metres(latitude, longitude, hospital.latitude, hospital.longitude) > NEARBY_METRES:
            raise Forbidden("您当前不在该医院附近，无法按医院报修", code="too_far")
    return await Device.filter(hospital_id=hospital.id).exclude(status="retired").order_by(
        "department_id", "system_number").prefetch_related("department")
