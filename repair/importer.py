"""Bulk import of one hospital's devices from CSV (UTF-8 with or without BOM, GBK from Chinese Excel) or XLSX.

All or nothing: every row is checked first (values, system numbers of other hospitals, owners' phones); if any
row fails, nothing is stored and the report says which rows and why. Otherwise all rows are stored in one
transaction: new system numbers are created, the hospital's existing ones updated (only the cells that are
filled), departments named in the file created on the way. Row numbers are those Excel shows (header row = 1).
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError

from core import audit
from core.errors import AppError, NotFound, Unprocessable
from core.models import Department, Hospital, User
from core.tables import HEADER_SEARCH_ROWS, MAX_ROWS, FileRejected, read_table
from repair import devices as device_service
from repair._shared import clean_text, transaction
from repair.models import Device


# field → (Chinese label for messages, header spellings accepted)
COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "system_number": ("系统编号", ("系统编号", "系统号", "设备编号", "system_number", "system number", "system no")),
    "nameplate_id": ("铭牌号", ("铭牌号", "铭牌编号", "铭牌id", "出厂编号", "序列号", "nameplate_id", "nameplate",
                              "serial_number", "serial", "sn")),
    "name": ("名称", ("名称", "设备名称", "name", "device_name")),
    "model": ("型号", ("型号", "规格型号", "设备型号", "model")),
    "device_type": ("类型", ("类型", "设备类型", "类别", "device_type", "type")),
    "manufacturer": ("厂家", ("厂家", "生产厂家", "厂商", "制造商", "manufacturer", "maker")),
    "department": ("科室", ("科室", "使用科室", "所属科室", "department")),
    "install_date": ("安装日期", ("安装日期", "启用日期", "install_date", "installed")),
    "owner_phone": ("负责人手机", ("负责人手机", "负责人手机号", "负责人电话", "owner_phone", "owner phone")),
    "maintenance_score": ("维护评分", ("维护评分", "评分", "maintenance_score", "score")),
    "status": ("状态", ("状态", "设备状态", "status")),
}
REQUIRED = ("system_number", "name", "device_type")
STATUS_WORDS = {
    "在用": "in_service", "正常": "in_service", "使用中": "in_service", "in_service": "in_service",
    "维修中": "under_repair", "故障": "under_repair", "待维修": "under_repair", "under_repair": "under_repair",
    "停用": "retired", "已停用": "retired", "报废": "retired", "已报废": "retired", "retired": "retired",
}
OUTCOME_LABELS = {"created": "新建", "updated": "更新", "unchanged": "无变化", "error": "错误"}
FIELD_LABELS = {key: label for key, (label, _) in COLUMNS.items()} | {"owner": "负责人"}


def _header_key(text: Any) -> str:
    text = unicodedata.normalize("NFKC", str(text or "")).lower()
    text = re.sub(r"\(.*?\)|\*", "", text)  # "系统编号（必填）", "*名称"
    return re.sub(r"[\s_]+", "", text)


_HEADERS = {_header_key(alias): key for key, (_, aliases) in COLUMNS.items() for alias in aliases}


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def find_header(rows: list[tuple[int, list]]) -> tuple[int, dict[int, str], list[str]]:
    """(index of the header row, {column index: field}, ignored header names)."""
    for index, (_, cells) in enumerate(rows[:HEADER_SEARCH_ROWS]):
        keys = {i: _HEADERS.get(_header_key(c)) for i, c in enumerate(cells) if not _blank(c)}
        if "system_number" not in keys.values():
            continue
        columns: dict[int, str] = {}
        for i, key in keys.items():
            if key is None:
                continue
            if key in columns.values():
                raise FileRejected(f"表头中“{COLUMNS[key][0]}”列出现了两次")
            columns[i] = key
        missing = [COLUMNS[k][0] for k in REQUIRED if k not in columns.values()]
        if missing:
            raise FileRejected(f"缺少必填列：{'、'.join(missing)}")
        ignored = [str(cells[i]).strip() for i, key in keys.items() if key is None]
        return index, columns, ignored
    raise FileRejected("未找到表头：第一行应为列名，至少包括" + "、".join(COLUMNS[k][0] for k in REQUIRED))


# -- cell values ---------------------------------------------------------------------------------------------------
def _text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))  # a number typed into Excel: 1001.0 → "1001"
    if isinstance(cell, datetime):
        return cell.date().isoformat()
    return str(cell).strip()


_EXCEL_EPOCH = date(1899, 12, 30)
_DATE_PATTERNS = (
    re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
)


def parse_date(cell: Any) -> date | None:
    """2021-03-05, 2021/3/5, 2021.3.5, 2021年3月5日, 20210305, an Excel date cell or its serial number."""
    if _blank(cell):
        return None
    if isinstance(cell, datetime):
        return cell.date()
    if isinstance(cell, date):
        return cell
    text = unicodedata.normalize("NFKC", _text(cell))
    if re.fullmatch(r"\d{5}(\.0+)?", text) and 20000 <= float(text) <= 80000:  # serial: 1954–2119
        return _EXCEL_EPOCH + timedelta(days=int(float(text)))
    for pattern in _DATE_PATTERNS:
        match = pattern.match(text)
        if match:
            try:
                return date(*(int(g) for g in match.groups()))
            except ValueError:
                break
    raise Unprocessable(f"安装日期“{_text(cell)}”无法识别，请写成 2021-03-05 或 2021/3/5", code="invalid_date")


def parse_score(cell: Any) -> int | None:
    if _blank(cell):
        return None
    text = unicodedata.normalize("NFKC", _text(cell))
    if re.fullmatch(r"\d+(\.0+)?", text):
        return int(float(text))
    raise Unprocessable(f"维护评分“{text}”须为 0–100 的整数", code="invalid_score")


def parse_status(cell: Any) -> str | None:
    if _blank(cell):
        return None
    word = clean_text(cell)
    if word.lower() in STATUS_WORDS:
        return STATUS_WORDS[word.lower()]
    raise Unprocessable(f"状态“{word}”无效，可填：在用、维修中、已停用", code="invalid_status")


def normalise_phone(text: Any) -> str:
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", str(text or "")))
    return digits[2:] if len(digits) == 13 and digits.startswith("86") else digits


# -- the report ----------------------------------------------------------------------------------------------------
@dataclass
class RowResult:
    row: int
    system_number: str
    outcome: str = ""  # created | updated | unchanged | error
    errors: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # fields an update changes
    values: dict = field(default_factory=dict)
    department: str = ""
    owner_phone: str = ""

    def line(self) -> str:
        where = f"第 {self.row} 行" + (f" {self.system_number}" if self.system_number else "")
        if self.errors:
            return f"{where}：错误：" + "；".join(self.errors)
        detail = f"（{'、'.join(FIELD_LABELS.get(f, f) for f in self.changed)}）" if self.changed else ""
        return f"{where}：{OUTCOME_LABELS[self.outcome]}{detail}"


@dataclass
class ImportReport:
    hospital: str
    filename: str
    dry_run: bool = False
    rows: list[RowResult] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    new_departments: list[str] = field(default_factory=list)
    stored: bool = False

    @property
    def failed_rows(self) -> list[RowResult]:
        return [r for r in self.rows if r.errors]

    @property
    def accepted(self) -> bool:
        return not self.file_errors and not self.failed_rows and bool(self.rows)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.rows if r.outcome == outcome and not r.errors)

    def summary(self) -> str:
        if self.file_errors:
            return "导入失败：" + "；".join(self.file_errors) + "。未导入任何设备。"
        if not self.rows:
            return "文件中没有设备数据，未导入任何设备。"
        if self.failed_rows:
            rows = "、".join(str(r.row) for r in self.failed_rows[:20]) + ("等" if len(self.failed_rows) > 20 else "")
            return (f"导入失败：第 {rows} 行有错误（共 {len(self.failed_rows)} 行）。整个文件未导入，"
                    "任何设备都没有保存；请改正后重新导入。")
        counts = f"新建 {self.count('created')} 台，更新 {self.count('updated')} 台，无变化 {self.count('unchanged')} 台"
        departments = f"；新建科室：{'、'.join(self.new_departments)}" if self.new_departments else ""
        if self.dry_run:
            return f"检查通过：可导入 {len(self.rows)} 台设备（{counts}{departments}）。这是试运行，未保存任何数据。"
        return f"导入成功：共 {len(self.rows)} 台设备（{counts}{departments}）。"

    def text(self) -> str:
        head = f"设备导入：{self.filename or '上传的文件'}（{self.hospital}）"
        return "\n".join([head, *self.notes, *(r.line() for r in self.rows), self.summary()])


# -- checking and storing ------------------------------------------------------------------------------------------
def _parse_row(row_number: int, cells: list, columns: dict[int, str]) -> RowResult:
    raw = {key: (cells[i] if i < len(cells) else None) for i, key in columns.items()}
    result = RowResult(row=row_number, system_number=device_service.normalise_system_number(_text(
        raw.get("system_number"))))
    values: dict = {}
    parsers = {"install_date": parse_date, "maintenance_score": parse_score, "status": parse_status}
    for key in ("system_number", *(k for k in COLUMNS if k != "system_number")):
        if key not in raw:
            continue
        try:
            if key == "system_number":
                device_service.check_system_number(_text(raw[key]))
            elif key in parsers:
                parsed = parsers[key](raw[key])
                if parsed is not None:
                    values.update(device_service.clean_values({key: parsed}))
            elif key == "department":
                result.department = clean_text(_text(raw[key]))
                if len(result.department) > 64:
                    raise Unprocessable("科室名称太长（最多 64 个字）", code="too_long")
            elif key == "owner_phone":
                result.owner_phone = normalise_phone(_text(raw[key]))
                if _text(raw[key]) and len(result.owner_phone) < 7:
                    raise Unprocessable(f"负责人手机“{_text(raw[key])}”无效", code="invalid_phone")
            elif key in REQUIRED or not _blank(raw[key]):
                values.update(device_service.clean_values({key: _text(raw[key])}))
        except Unprocessable as exc:
            result.errors.append(exc.message)
    result.values = values
    return result


async def _check_against_database(report: ImportReport, hospital: Hospital) -> dict[str, Device]:
    """Errors that need the database (numbers of other hospitals, owners); outcomes of the others."""
    numbers = [r.system_number for r in report.rows if r.system_number]
    existing = {d.system_number: d for d in await Device.filter(system_number__in=numbers)} if numbers else {}
    phones: dict[str, list[int]] = {}
    for user in await User.filter(hospital_id=hospital.id, active=True).exclude(phone=""):
        phones.setdefault(normalise_phone(user.phone), []).append(user.id)
    departments = {d.name: d.id for d in await Department.filter(hospital_id=hospital.id)}
    for row in report.rows:
        device = existing.get(row.system_number)
        if device is not None and device.hospital_id != hospital.id:
            row.errors.append(f"系统编号“{row.system_number}”已被其他医院的设备使用")
        if row.owner_phone:
            owners = phones.get(row.owner_phone, [])
            if len(owners) != 1:
                row.errors.append(f"负责人手机“{row.owner_phone}”" +
                                  ("对应多名人员，请在系统中核对" if owners else "不是本医院已登记人员的手机号"))
            else:
                row.values["owner"] = owners[0]
        if row.department and row.department not in departments and row.department not in report.new_departments:
            report.new_departments.append(row.department)
        if row.errors:
            row.outcome = "error"
            continue
        if device is None:
            row.outcome = "created"
            continue
        compare = dict(row.values)
        if row.department:
            compare["department"] = departments.get(row.department, -1)  # a new department is always a change
        row.changed = list(device_service.diff_device(device, compare))
        row.outcome = "updated" if row.changed else "unchanged"
    return existing


async def _store(report: ImportReport, hospital: Hospital, existing: dict[str, Device], actor: User | None,
                 actor_label: str) -> None:
    async with transaction() as conn:
        departments = {d.name: d for d in await Department.filter(hospital_id=hospital.id).using_db(conn)}
        for name in report.new_departments:
            departments[name] = await Department.create(hospital=hospital, name=name, using_db=conn)
            await audit.record("department.created", "department", departments[name].id, actor=actor,
                               actor_label=actor_label, changes={"name": name, "hospital": hospital.id},
                               using_db=conn)
        for row in report.rows:
            values = dict(row.values)
            if row.department:
                values["department"] = departments[row.department]
            try:
                if row.outcome == "created":
                    await device_service.create_device(hospital, system_number=row.system_number, actor=actor,
                                                       actor_label=actor_label, using_db=conn, **values)
                elif row.outcome == "updated":
                    await device_service.update_device(existing[row.system_number], actor=actor,
                                                       actor_label=actor_label, using_db=conn, **values)
            except AppError as exc:  # someone changed the same device meanwhile: undo everything
                row.errors.append(exc.message)
                row.outcome = "error"
                raise
        await audit.record("devices.imported", "hospital", hospital.id, actor=actor, actor_label=actor_label,
                           changes={"file": report.filename, "created": report.count("created"),
                                    "updated": report.count("updated"), "departments": report.new_departments},
                           using_db=conn)


async def import_devices(hospital: Hospital | int, data: bytes, filename: str = "", *, dry_run: bool = False,
                         actor: User | None = None, actor_label: str = "设备导入") -> ImportReport:
    """Check a file of one hospital's devices and, unless ``dry_run`` or any row fails, store all of it."""
    hospital_obj = hospital if isinstance(hospital, Hospital) else await Hospital.get_or_none(id=hospital)
    if hospital_obj is None:
        raise NotFound("医院不存在", code="hospital_not_found")
    report = ImportReport(hospital=hospital_obj.name, filename=filename, dry_run=dry_run)
    try:
        rows = await asyncio.to_thread(read_table, data, filename)  # parsing a large sheet is CPU work
        header_index, columns, ignored = find_header(rows)
    except FileRejected as exc:
        report.file_errors.append(str(exc))
        return report
    if ignored:
        report.notes.append("已忽略无法识别的列：" + "、".join(ignored))
    body = [(n, cells) for n, cells in rows[header_index + 1:] if not all(_blank(c) for c in cells)]
    if len(body) > MAX_ROWS:
        report.file_errors.append(f"设备太多（一次最多 {MAX_ROWS} 行），请分批导入")
        return report
    seen: dict[str, int] = {}
    for n, cells in body:
        row = _parse_row(n, cells, columns)
        if row.system_number and row.system_number in seen:
            row.errors.append(f"与第 {seen[row.system_number]} 行的系统编号重复")
        seen.setdefault(row.system_number, n)
        report.rows.append(row)
    existing = await _check_against_database(report, hospital_obj)
    if not report.accepted or dry_run:
        return report
    try:
        await _store(report, hospital_obj, existing, actor, actor_label)
    except AppError:
        return report  # the row that failed says why; the transaction stored nothing
    except IntegrityError:
        report.file_errors.append("保存时与其他人的修改冲突，请稍后重新导入")
        return report
    report.stored = True
    from repair.service_groups import rebuild_service_groups  # owners may have changed

    await rebuild_service_groups(hospital_obj.id)
    return report


async def hospital_by_name(name: str) -> Hospital:
    """A hospital by its name or one of its aliases (what an operator types on the command line)."""
    wanted = clean_text(name)
    found = await Hospital.get_or_none(name=wanted)
    if found is not None:
        return found
    matches = [h for h in await Hospital.all()
               if wanted in {a.strip() for a in re.split(r"[,，]", h.aliases or "") if a.strip()}]
    if len(matches) == 1:
        return matches[0]
    raise NotFound(f"未找到医院“{wanted}”" if not matches else f"“{wanted}”对应多家医院，请写全称",
                   code="hospital_not_found")
