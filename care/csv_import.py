"""Patients from a table (CSV in UTF-8 or GBK, or XLSX) and a folder of their photos.

Columns (Chinese or English headers): 姓名 (required), HIS编号, 性别, 出生日期, 身份证号, 手机, 照片. A row is
matched to a stored patient by its HIS number, else by its ID-card number (through the hash), so importing the same
table again updates instead of duplicating; a row with neither is refused. The photo is the file named in 照片,
inside the photo folder, or else ``<HIS编号>.jpg|.jpeg|.png`` there. A file that cannot be read as a table, or has
no 姓名 column, is rejected before anything is stored.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from datetime import date, datetime
from pathlib import Path
from typing import Any

from tortoise.exceptions import IntegrityError

from core import audit
from core.errors import AppError, Unprocessable
from core.tables import FileRejected, read_table
from care import patients
from care.importing import ImportReport, Issue, PhotoQueue, PhotoStep, Progress, enrol_with_vision
from care.models import Patient

COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "患者姓名", "name"),
    "his_id": ("his编号", "his号", "his_id", "hisid", "患者id", "病人id", "病案号"),
    "sex": ("性别", "sex", "gender"),
    "birth_date": ("出生日期", "生日", "birth_date", "birthdate", "birthday"),
    "id_card": ("身份证号", "身份证", "身份证号码", "id_card", "idcard"),
    "phone": ("手机", "手机号", "电话", "联系电话", "phone", "mobile"),
    "photo": ("照片", "照片文件", "photo"),
}
SEX_WORDS = {"男": "male", "m": "male", "male": "male", "女": "female", "f": "female", "female": "female",
             "其他": "other", "other": "other", "未知": "unknown", "unknown": "unknown"}
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$|^(\d{4})(\d{2})(\d{2})$")


class TableRejected(Unprocessable):
    code, message = "bad_table", "无法读取该表格"


def _key(text: Any) -> str:
    return re.sub(r"[\s_（）()*]+", "", unicodedata.normalize("NFKC", str(text or "")).lower())


_HEADERS = {_key(alias): field for field, aliases in COLUMNS.items() for alias in aliases}


def _cell(cells: list, index: int | None) -> Any:
    if index is None or index >= len(cells):
        return None
    value = cells[index]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value.strip() if isinstance(value, str) else value


def parse_birth_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    match = _DATE.match(unicodedata.normalize("NFKC", str(value)))
    if match:
        y, m, d = (int(g) for g in (match.groups()[:3] if match.group(1) else match.groups()[3:]))
        try:
            return date(y, m, d)
        except ValueError:
            pass
    raise Unprocessable(f"出生日期“{value}”无法识别，请写成 1980-03-05", code="bad_birth_date")


def from_id_card(id_card: str) -> tuple[date | None, str]:
    """Birth date and sex written in an 18-character ID-card number (digits 7–14; the 17th is odd for men)."""
    if len(id_card) != 18:
        return None, "unknown"
    try:
        born = date(int(id_card[6:10]), int(id_card[10:12]), int(id_card[12:14]))
    except ValueError:
        born = None
    return born, "male" if int(id_card[16]) % 2 else "female"


def _header(rows: list[tuple[int, list]]) -> tuple[int, dict[str, int]]:
    for index, (_, cells) in enumerate(rows[:10]):  # exports often carry a title row above the header
        columns: dict[str, int] = {}
        for i, cell in enumerate(cells):
            field = _HEADERS.get(_key(cell))
            if field and field not in columns:
                columns[field] = i
        if "name" in columns:
            return index, columns
    raise TableRejected("未找到表头：第一行应为列名，至少包括“姓名”")


class CSVImporter:
    def __init__(self, photo_dir: Path | None, *, secret_key: str | None, photos: PhotoStep | None,
                 progress: Progress | None, photo_workers: int = 2, actor_label: str = "table-import"):
        self.photo_dir = photo_dir.resolve() if photo_dir else None
        self.secret_key = secret_key
        self.progress = progress
        self.actor_label = actor_label
        self.report = ImportReport()
        self._photos = PhotoQueue(photos, self.report, source="import", workers=photo_workers)

    def _photo_path(self, named: str, his_id: str) -> Path | None:
        if self.photo_dir is None:
            return None
        if named:
            path = (self.photo_dir / named).resolve()
            if not path.is_relative_to(self.photo_dir):  # "../../etc/passwd" stays out
                raise Unprocessable(f"照片“{named}”不在照片文件夹内")
            if not path.is_file():
                raise Unprocessable(f"照片文件“{named}”不存在")
            return path
        for suffix in PHOTO_SUFFIXES if his_id else ():
            for candidate in (his_id + suffix, his_id + suffix.upper()):
                if (self.photo_dir / candidate).is_file():
                    return self.photo_dir / candidate
        return None

    async def row(self, row_number: int, cells: list, columns: dict[str, int]) -> None:
        where = f"第 {row_number} 行"
        get = {field: _cell(cells, columns.get(field)) for field in COLUMNS}
        his_id = str(get["his_id"] or "")[:64]
        try:
            values = await self._values(get)
            existing = await Patient.get_or_none(his_id=his_id) if his_id else None
            if existing is None and get["id_card"]:
                existing = await patients.find_by_id_card(self.secret_key, str(get["id_card"]))
            if existing is None and not his_id and not get["id_card"]:
                raise Unprocessable("需要 HIS编号 或 身份证号，重复导入时用来识别同一患者")
            if his_id and existing is not None and existing.his_id not in (None, his_id):
                raise Unprocessable(f"身份证号已属于另一 HIS 编号的患者（{existing.number}）")
            if existing is not None:
                patient = await patients.update_patient(existing, secret_key=self.secret_key,
                                                        **values, **({"his_id": his_id} if his_id else {}))
                outcome = "updated"
            else:
                patient = await patients.new_patient(secret_key=self.secret_key, his_id=his_id or None,
                                                     actor_label=self.actor_label, **values)
                outcome = "created"
        except AppError as exc:
            self._failed(where, his_id or str(get["name"] or ""), exc.message)
            return
        except IntegrityError:
            self._failed(where, his_id, "与已有数据冲突（HIS 编号重复？）")
            return
        self.report.counts["Patient"][outcome] += 1
        try:
            path = self._photo_path(str(get["photo"] or ""), his_id)
        except AppError as exc:
            self.report.photos["failed"] += 1
            self.report.issues.append(Issue(where, patient.number, exc.message, "photo"))
            return
        if path is not None:
            await self._photos.put(patient, where, lambda: asyncio.to_thread(path.read_bytes))

    async def _values(self, get: dict) -> dict:
        name = str(get["name"] or "").strip()
        if not name:
            raise Unprocessable("姓名为空")
        values: dict[str, Any] = {"name": name}
        sex_word = _key(get["sex"])
        if sex_word:
            if sex_word not in SEX_WORDS:
                raise Unprocessable(f"性别“{get['sex']}”无法识别，请写 男 或 女")
            values["sex"] = SEX_WORDS[sex_word]
        born = parse_birth_date(get["birth_date"])
        if get["id_card"]:
            if not self.secret_key:
                raise Unprocessable("未配置 SECRET_KEY，无法保存身份证号")
            card = patients.normalise_id_card(get["id_card"])
            values["id_card"] = card
            card_born, card_sex = from_id_card(card)
            born = born or card_born
            values.setdefault("sex", card_sex)
        if born:
            values["birth_date"] = born
        if get["phone"]:
            values["phone"] = str(get["phone"])
        return values

    def _failed(self, where: str, label: str, reason: str) -> None:
        self.report.counts["Patient"]["failed"] += 1
        self.report.issues.append(Issue(where, label, reason))

    async def close(self) -> ImportReport:
        await self._photos.close()
        await audit.record("patient.import", "patient", "table", actor_label=self.actor_label,
                           changes=self.report.as_dict() | {"issues": len(self.report.issues)})
        return self.report


async def import_table(data: bytes, filename: str = "", *, photo_dir: Path | None = None,
                       secret_key: str | None = None, photos: PhotoStep | None = enrol_with_vision,
                       progress: Progress | None = None, photo_workers: int = 2) -> ImportReport:
    """Import patients from CSV/XLSX bytes. ``TableRejected`` (nothing stored) when the table cannot be read."""
    try:
        rows = await asyncio.to_thread(read_table, data, filename)
    except FileRejected as exc:
        raise TableRejected(str(exc)) from None
    header, columns = _header(rows)
    if photo_dir is not None and not Path(photo_dir).is_dir():
        raise TableRejected(f"照片文件夹不存在：{Path(photo_dir).name}")
    body = [(n, cells) for n, cells in rows[header + 1:] if any(c not in (None, "") for c in cells)]
    importer = CSVImporter(Path(photo_dir) if photo_dir else None, secret_key=secret_key, photos=photos,
                           progress=progress, photo_workers=photo_workers)
    try:
        for done, (row_number, cells) in enumerate(body, 1):
            await importer.row(row_number, cells, columns)
            if progress:
                progress(done, len(body))
    finally:
        report = await importer.close()
    return report
