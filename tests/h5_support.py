"""Shared by the repair tests: a small world of devices and people, real media bytes, links, cookies."""

from __future__ import annotations

import io
import math
import struct
import wave
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from PIL import Image

from core.models import Department, Hospital, User
from repair import labels
from repair.models import Device, DeviceGroup


async def make_world() -> dict:
    hospital = await Hospital.create(name="市第一人民医院")
    icu = await Department.create(hospital=hospital, name="重症医学科")
    lab = await Department.create(hospital=hospital, name="检验科")
    device = await Device.create(hospital=hospital, department=icu, system_number="D0001", nameplate_id="SN-778",
                                 name="呼吸机", model="V60", manufacturer="飞利浦", device_type="ventilator",
                                 repair_count=3, maintenance_score=85)
    group = await DeviceGroup.create(hospital=hospital, department=lab, name="生化流水线")
    members = [await Device.create(hospital=hospital, department=lab, system_number=f"L00{i}", nameplate_id=f"AU-{i}",
                                   name=name, model=model, device_type="analyser", group=group, group_position=i)
               for i, (name, model) in enumerate([("生化分析仪", "AU5800"), ("免疫分析仪", "DxI800"),
                                                  ("样本处理器", "PK7300")], 1)]
    nurse = await User.create(name="王护士", role="staff", hospital=hospital, department=icu, openid="oNurse")
    other = await User.create(name="李医生", role="staff", hospital=hospital, openid="oDoctor")
    engineer = await User.create(name="张工", role="engineer", hospital=hospital, openid="oEngineer")
    return dict(hospital=hospital, device=device, group=group, members=members, nurse=nurse, other=other,
                engineer=engineer)


def repair_path(settings, scene: str, *, printed: bool = False) -> str:
    """The repair page's path and query, as a label or a scan reply links to it."""
    parts = urlsplit(labels.repair_link(settings, scene, printed=printed))
    return f"{parts.path}?{parts.query}"


def png_bytes(size: tuple[int, int] = (64, 48), colour: str = "#2a7ae2") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    """A short 440 Hz tone, 16-bit mono."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                               for i in range(int(seconds * rate))))
    return out.getvalue()


def cookie_from(headers, name: str) -> str | None:
    """A cookie's value from a response's Set-Cookie headers (aiohttp keeps no cookies for IP-address hosts)."""
    for raw in headers.getall("Set-Cookie", []):
        jar = SimpleCookie()
        jar.load(raw)
        if name in jar:
            return jar[name].value
    return None
