"""Bulk device import on both databases: CSV (UTF-8, BOM, GBK) and XLSX, all-or-nothing, updates, the report,
and the command line."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from core.errors import Unprocessable
from core.models import AuditEntry, Department, Hospital, User
from repair import devices
from repair.importer import import_devices, parse_date
from repair.models import Device
from repair.service_groups import members_of

PROJECT = Path(__file__).resolve().parents[1]
HEADER = "系统编号,铭牌号,名称,型号,类型,厂家,科室,安装日期,负责人手机,维护评分,状态"


def csv_bytes(*lines: str, encoding: str = "utf-8-sig") -> bytes:
    return ("\r\n".join([HEADER, *lines]) + "\r\n").encode(encoding)


@pytest.fixture
async def hospital(db):
    first = await Hospital.create(name="市第一人民医院", aliases="市一院,第一人民医院")
    await Hospital.create(name="市中心医院")
    await Department.create(hospital=first, name="检验科")
    await User.create(name="王建国", role="staff", hospital=first, phone="138 0013 8000")
    return first


async def test_a_utf8_csv_is_imported_with_departments_owners_and_audit(hospital):
    data = csv_bytes("A0001,SN-778,呼吸机,V60,呼吸机,飞利浦,重症医学科,2021/3/5,13800138000,90,在用",
                     "A0002,C16-01,离心机,ST 16R,centrifuge,赛默飞,检验科,2020-11-08,,,维修中")
    report = await import_devices(hospital, data, "设备.csv")
    assert report.accepted and report.stored
    assert report.text().splitlines() == [
        "设备导入：设备.csv（市第一人民医院）",
        "第 2 行 A0001：新建",
        "第 3 行 A0002：新建",
        "导入成功：共 2 台设备（新建 2 台，更新 0 台，无变化 0 台；新建科室：重症医学科）。",
    ]
    ventilator = await Device.get(system_number="A0001").prefetch_related("department", "owner")
    assert (ventilator.name, ventilator.model, ventilator.device_type, ventilator.manufacturer) == (
        "呼吸机", "V60", "ventilator", "飞利浦")
    assert (ventilator.department.name, ventilator.owner.name) == ("重症医学科", "王建国")
    assert (ventilator.install_date, ventilator.maintenance_score, ventilator.status) == (
        date(2021, 3, 5), 90, "in_service")
    centrifuge = await Device.get(system_number="A0002")
    assert (centrifuge.status, centrifuge.maintenance_score, centrifuge.owner_id) == ("under_repair", 100, None)
    assert await Department.filter(hospital=hospital).count() == 2
    assert await AuditEntry.filter(action="device.created").count() == 2
    summary = await AuditEntry.get(action="devices.imported")
    assert (summary.actor_label, summary.changes["created"], summary.changes["departments"]) == (
        "设备导入", 2, ["重症医学科"])
    assert {m.user.name: m.role for m in await members_of(hospital.id)} == {"王建国": "owner"}


async def test_one_bad_row_stores_nothing_and_the_report_says_why(hospital):
    data = csv_bytes("A0001,SN-778,呼吸机,V60,呼吸机,,重症医学科,2021-03-05,,90,在用",
                     "A0002,C16-01,离心机,ST 16R,离心机,,新科室,2021-02-30,,150,坏了",
                     "A0003,M-1,,N12,,,,,13999999999,,",
                     "a0001,SN-779,监护仪,N12,监护仪,,,,,,")
    report = await import_devices(hospital, data, "设备.csv")
    assert not report.accepted and not report.stored
    assert report.text().splitlines()[1:] == [
        "第 2 行 A0001：新建",
        "第 3 行 A0002：错误：安装日期“2021-02-30”无法识别，请写成 2021-03-05 或 2021/3/5；"
        "维护评分须为 0–100 的整数；状态“坏了”无效，可填：在用、维修中、已停用",
        "第 4 行 A0003：错误：请填写设备名称；请填写设备类型；负责人手机“13999999999”不是本医院已登记人员的手机号",
        "第 5 行 A0001：错误：与第 2 行的系统编号重复",
        "导入失败：第 3、4、5 行有错误（共 3 行）。整个文件未导入，任何设备都没有保存；请改正后重新导入。",
    ]
    assert await Device.all().count() == 0
    assert await Department.filter(hospital=hospital).count() == 1  # "重症医学科", "新科室" were not created
    assert await AuditEntry.all().count() == 0


async def test_a_gbk_csv_from_chinese_excel(hospital):
    data = csv_bytes("B0001,BC-6800,血细胞分析仪,BC-6800Plus,血细胞分析仪,迈瑞,检验科,2020年6月18日,,88,正常",
                     encoding="gbk")
    report = await import_devices(hospital, data, "设备清单.csv")
    assert report.accepted and report.stored, report.text()
    device = await Device.get(system_number="B0001").prefetch_related("department")
    assert (device.name, device.manufacturer, device.department.name) == ("血细胞分析仪", "迈瑞", "检验科")
    assert (device.device_type, device.install_date) == ("haematology_analyser", date(2020, 6, 18))


async def test_excel_unicode_text_tab_separated(hospital):
    data = "\r\n".join([HEADER.replace(",", "\t"), "A0001\tSN-1\t监护仪\tN12\t监护仪\t\t\t\t\t\t"]).encode("utf-16")
    report = await import_devices(hospital, data, "设备.txt")
    assert report.stored, report.text()
    assert (await Device.get(system_number="A0001")).name == "监护仪"


async def test_an_xlsx_with_a_title_row_english_headers_and_date_cells(hospital):
    book = Workbook()
    sheet = book.active
    sheet.append(["市一院设备清单（2024）"])
    sheet.append(["System Number", "Nameplate ID", "Name", "Model", "Device Type", "Department", "Install Date",
                  "Maintenance Score", "备注"])
    sheet.append([1001, "SN 77-1", "监护仪", "N12", "monitor", "重症医学科", datetime(2022, 1, 10), 95.0, "新到货"])
    sheet.append([None, None, None, None, None, None, None, None, None])  # blank rows are skipped
    sheet.append(["A0002", "C16", "离心机", "ST 16R", "离心机", "检验科", "44260", 70, ""])
    buffer = io.BytesIO()
    book.save(buffer)
    report = await import_devices(hospital, buffer.getvalue(), "devices.xlsx")
    assert report.stored, report.text()
    assert report.text().splitlines()[1:4] == ["已忽略无法识别的列：备注", "第 3 行 1001：新建", "第 5 行 A0002：新建"]
    monitor = await Device.get(system_number="1001")
    assert (monitor.nameplate_id, monitor.install_date, monitor.maintenance_score) == ("SN77-1", date(2022, 1, 10), 95)
    centrifuge = await Device.get(system_number="A0002")
    assert (centrifuge.install_date, centrifuge.device_type) == (date(2021, 3, 5), "centrifuge")


async def test_reimport_updates_the_hospitals_devices(hospital):
    await import_devices(hospital, csv_bytes("A0001,SN-778,呼吸机,V60,呼吸机,,,,,90,在用",
                                             "A0002,C16,离心机,ST 16R,离心机,,,,,,"), "v1.csv")
    report = await import_devices(hospital, csv_bytes("A0001,SN-778,呼吸机,V680,呼吸机,,重症医学科,,,80,维修中",
                                                      "A0002,C16,离心机,ST 16R,离心机,,,,,,",
                                                      "A0003,M1,监护仪,N12,监护仪,,,,,,"), "v2.csv")
    assert report.text().splitlines()[1:] == [
        "第 2 行 A0001：更新（型号、维护评分、状态、科室）",
        "第 3 行 A0002：无变化",
        "第 4 行 A0003：新建",
        "导入成功：共 3 台设备（新建 1 台，更新 1 台，无变化 1 台；新建科室：重症医学科）。",
    ]
    device = await Device.get(system_number="A0001").prefetch_related("department")
    assert (device.model, device.maintenance_score, device.status, device.department.name) == (
        "V680", 80, "under_repair", "重症医学科")
    assert await Device.all().count() == 3
    entry = await AuditEntry.get(action="device.updated", entity_id="A0001")
    assert entry.changes["model"] == ["V60", "V680"]


async def test_a_system_number_of_another_hospital_is_an_error(hospital):
    other = await Hospital.get(name="市中心医院")
    await devices.create_device(other, system_number="Z0001", name="呼吸机", device_type="ventilator")
    report = await import_devices(hospital, csv_bytes("Z0001,SN-1,呼吸机,V60,呼吸机,,,,,,"), "x.csv")
    assert report.text().splitlines()[1] == "第 2 行 Z0001：错误：系统编号“Z0001”已被其他医院的设备使用"
    assert not report.stored and (await Device.get(system_number="Z0001")).hospital_id == other.id


async def test_dry_run_reports_without_storing(hospital):
    report = await import_devices(hospital, csv_bytes("A0001,SN-778,呼吸机,V60,呼吸机,,急诊科,,,,"), "x.csv",
                                  dry_run=True)
    assert report.accepted and not report.stored
    assert report.summary() == "检查通过：可导入 1 台设备（新建 1 台，更新 0 台，无变化 0 台；新建科室：急诊科）。这是试运行，未保存任何数据。"
    assert await Device.all().count() == 0 and not await Department.filter(name="急诊科").exists()


@pytest.mark.parametrize("data, message", [
    ("名称,型号\n呼吸机,V60\n".encode(), "导入失败：未找到表头：第一行应为列名，至少包括系统编号、名称、类型。未导入任何设备。"),
    ("系统编号,名称\nA1,呼吸机\n".encode(), "导入失败：缺少必填列：类型。未导入任何设备。"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64, "导入失败：不支持旧版 Excel（.xls）文件，请另存为 .xlsx 或 CSV（UTF-8）。未导入任何设备。"),
    (b"PK\x03\x04broken", "导入失败：无法读取该 Excel 文件，请确认文件未损坏且为 .xlsx 格式。未导入任何设备。"),
    (HEADER.encode() + b"\n", "文件中没有设备数据，未导入任何设备。"),
])
async def test_unreadable_files_are_refused_whole(hospital, data, message):
    report = await import_devices(hospital, data, "bad.csv")
    assert not report.accepted and report.summary() == message
    assert await Device.all().count() == 0


@pytest.mark.parametrize("cell, expected", [
    ("2021-03-05", date(2021, 3, 5)), ("2021/3/5", date(2021, 3, 5)), ("2021.3.5", date(2021, 3, 5)),
    ("2021年3月5日", date(2021, 3, 5)), ("20210305", date(2021, 3, 5)), ("2021-03-05 00:00:00", date(2021, 3, 5)),
    ("44260", date(2021, 3, 5)), (44260, date(2021, 3, 5)), (datetime(2021, 3, 5, 8, 0), date(2021, 3, 5)),
    ("", None), (None, None),
])
def test_dates_in_common_formats(cell, expected):
    assert parse_date(cell) == expected


@pytest.mark.parametrize("cell", ["3/5/2021", "2021-13-01", "明年", "123"])
def test_unreadable_dates_are_errors(cell):
    with pytest.raises(Unprocessable):
        parse_date(cell)


async def _cli(database_url: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=database_url, VAR_DIR=str(tmp_path / "cli"), SECRET_KEY="test", LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "repair", *args, cwd=PROJECT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def test_command_line_import(hospital, database_url, tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_bytes(csv_bytes("A0001,SN-778,呼吸机,V60,呼吸机,,,,,,"))
    bad.write_bytes(csv_bytes("A0002,SN-779,呼吸机,V60,,,,,,,"))

    code, out = await _cli(database_url, tmp_path, "import-devices", str(good), "--hospital", "市一院", "--dry-run")
    assert code == 0 and "这是试运行，未保存任何数据" in out and await Device.all().count() == 0
    code, out = await _cli(database_url, tmp_path, "import-devices", str(bad), "--hospital", "市第一人民医院")
    assert code == 1 and "第 2 行 A0002：错误：请填写设备类型" in out and await Device.all().count() == 0
    code, out = await _cli(database_url, tmp_path, "import-devices", str(good), "--hospital", "市第一人民医院")
    assert code == 0 and "导入成功：共 1 台设备" in out
    assert [d.system_number for d in await Device.all()] == ["A0001"]
    code, out = await _cli(database_url, tmp_path, "import-devices", str(good), "--hospital", "不存在的医院")
    assert code == 1 and "未找到医院“不存在的医院”" in out
