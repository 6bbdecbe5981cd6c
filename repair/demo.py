"""Demo data for a fresh installation: two hospitals with departments, people, devices, a lab line and an
invitation code, created through the same services as real data (so audit entries and service groups exist too).
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta, timezone

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core import audit
from core.models import Department, Hospital, InvitationCode, User
from core.settings import Settings
from repair import devices, groups
from repair.service_groups import rebuild_service_groups

_LABEL = "演示数据"
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: people read it aloud and type it

HOSPITALS = [
    {"name": "滨江市第一人民医院", "aliases": "市一院,第一人民医院", "address": "滨江市江南区人民路 88 号",
     "latitude": 30.2741, "longitude": 120.1551, "departments": ["检验科", "重症医学科", "急诊科", "手术室"],
     "owner": ("王建国", "13800000001")},
    {"name": "滨江市中心医院", "aliases": "中心医院", "address": "滨江市滨湖区湖滨路 16 号",
     "latitude": 30.2592, "longitude": 120.2198, "departments": ["检验科", "急诊科", "心内科"],
     "owner": ("陈丽华", "13800000002")},
]
# (hospital index, department, system number, nameplate, name, model, type, manufacturer, installed)
DEVICES = [
    (0, "检验科", "A0001", "AU58-210345", "生化分析仪", "AU5800", "biochemistry_analyser", "贝克曼库尔特", "2019-05-20"),
    (0, "检验科", "A0002", "AU58-210346", "生化分析仪", "AU5800", "biochemistry_analyser", "贝克曼库尔特", "2019-05-20"),
    (0, "检验科", "A0003", "DXI-880127", "免疫分析仪", "DxI 800", "immunoassay_analyser", "贝克曼库尔特", "2020-03-02"),
    (0, "检验科", "A0004", "ST16-77120", "离心机", "ST 16R", "centrifuge", "赛默飞世尔", "2018-11-08"),
    (0, "重症医学科", "A0005", "C6-3340921", "呼吸机", "HAMILTON-C6", "ventilator", "哈美顿", "2021-03-05"),
    (0, "重症医学科", "A0006", "SV6-1908832", "呼吸机", "SV600", "ventilator", "迈瑞", "2021-07-16"),
    (0, "重症医学科", "A0007", "N12-5521093", "监护仪", "BeneVision N12", "monitor", "迈瑞", "2022-01-10"),
    (0, "急诊科", "A0008", "BBS-4410286", "输液泵", "Infusomat Space", "infusion_pump", "贝朗", "2020-09-28"),
    (1, "检验科", "B0001", "BC-6800-33215", "血细胞分析仪", "BC-6800Plus", "haematology_analyser", "迈瑞",
     "2020-06-18"),
    (1, "检验科", "B0002", "L530-99012", "离心机", "L530", "centrifuge", "湘仪", "2017-04-01"),
    (1, "急诊科", "B0003", "SP3-7720145", "呼吸机", "SynoVent E5", "ventilator", "迈瑞", "2019-12-12"),
    (1, "急诊科", "B0004", "D3-1190274", "除颤仪", "BeneHeart D3", "defibrillator", "迈瑞", "2021-10-09"),
    (1, "心内科", "B0005", "IM8-6620318", "监护仪", "iMEC8", "monitor", "迈瑞", "2018-08-23"),
]
LAB_LINE = {"hospital": 0, "name": "检验科生化免疫流水线", "members": ["A0001", "A0002", "A0003"],
            "expected_models": ["AU5800", "AU5800", "DxI 800"]}


async def load_demo(settings: Settings | None = None) -> list[str]:
    """Create the demo data when there is no hospital yet; lines saying what was made (empty when skipped).
    With ``settings``, the lines also give repair-page links to try in a browser."""
    if await Hospital.exists():
        return []
    try:
        async with in_transaction() as conn:
            made = await _create(conn)
    except IntegrityError:  # another process loaded it at the same moment
        return []
    for hospital in made["hospitals"]:
        await rebuild_service_groups(hospital.id)
    return [
        f"demo: {len(made['hospitals'])} hospitals ({'、'.join(h.name for h in made['hospitals'])}), "
        f"{made['devices']} devices, device group '{LAB_LINE['name']}'",
        f"demo: invitation code {made['code']} (staff of {made['hospitals'][0].name}, valid 30 days)",
        *(_try_links(settings) if settings else []),
    ]


def _try_links(settings: Settings) -> list[str]:
    """Repair-page links as a printed label carries them, for a first look without WeChat."""
    from repair.labels import repair_link

    return [f"demo: repair page of a device: {repair_link(settings, 'd:' + LAB_LINE['members'][0], printed=True)}"]


async def _create(conn) -> dict:
    admin = await User.create(name="演示管理员", role="admin", username="demo-admin", using_db=conn)
    hospitals, departments, owners = [], [], []
    for spec in HOSPITALS:
        hospital = await Hospital.create(name=spec["name"], aliases=spec["aliases"], address=spec["address"],
                                         latitude=spec["latitude"], longitude=spec["longitude"], using_db=conn)
        await audit.record("hospital.created", "hospital", hospital.id, actor=admin, changes={"name": hospital.name},
                           using_db=conn)
        deps = {n: await Department.create(hospital=hospital, name=n, using_db=conn) for n in spec["departments"]}
        name, phone = spec["owner"]
        owners.append(await User.create(name=name, phone=phone, role="staff", hospital=hospital,
                                        department=next(iter(deps.values())), using_db=conn))
        hospitals.append(hospital)
        departments.append(deps)
    agent = await User.create(name="李客服", phone="13800000011", role="agent", username="demo-agent", using_db=conn)
    await agent.served_hospitals.add(*hospitals, using_db=conn)
    engineer = await User.create(name="张工程师", phone="13800000012", role="engineer", hospital=hospitals[0],
                                 username="demo-engineer", using_db=conn)
    await engineer.served_hospitals.add(hospitals[1], using_db=conn)

    by_number = {}
    for h, dep, number, plate, name, model, kind, maker, installed in DEVICES:
        by_number[number] = await devices.create_device(
            hospitals[h], system_number=number, nameplate_id=plate, name=name, model=model, device_type=kind,
            manufacturer=maker, department=departments[h][dep], install_date=date.fromisoformat(installed),
            owner=owners[h], actor=admin, actor_label=_LABEL, using_db=conn)
    line = LAB_LINE
    await groups.create_group(hospitals[line["hospital"]], line["name"], [by_number[n].id for n in line["members"]],
                              line["expected_models"], owner=owners[line["hospital"]], actor=admin,
                              actor_label=_LABEL, using_db=conn)

    code = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    invitation = await InvitationCode.create(code=code, hospital=hospitals[0], role="staff", max_uses=20,
                                             expires_at=datetime.now(timezone.utc) + timedelta(days=30),
                                             created_by=admin, using_db=conn)
    await audit.record("invitation.created", "invitation_code", invitation.id, actor=admin,
                       changes={"hospital": hospitals[0].id, "role": "staff", "max_uses": 20}, using_db=conn)
    return {"hospitals": hospitals, "devices": len(by_number), "code": code}
