"""Import and export of the knowledge base: JSON (a list of ``{"id","device_type","question","variants","answer",
"tier","docs","videos"}``) or CSV with the same columns (variants separated by ``|``; docs/videos as ``title|url``
pairs separated by ``;``). A file is stored whole or not at all; a re-import updates entries by id. Every change
bumps the version that workers follow.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from core import audit
from core.models import User
from knowledge.models import TIERS, KBEntry, KBState

FIELDS = ("id", "device_type", "question", "variants", "answer", "tier", "docs", "videos")
MAX_ENTRIES = 50_000


@dataclass
class ImportReport:
    rows: list[str] = field(default_factory=list)  # one line per refused row
    created: int = 0
    updated: int = 0
    accepted: bool = False

    def text(self) -> str:
        if not self.accepted:
            return "\n".join(["导入失败，未保存任何条目：", *self.rows])
        return f"导入成功：新增 {self.created} 条，更新 {self.updated} 条"


def _links(value, where: str, problems: list[str]) -> list[dict]:
    if value in (None, ""):
        return []
    if isinstance(value, str):  # CSV: "title|url; title|url"
        value = [dict(zip(("title", "url"), (p.strip() for p in part.split("|", 1))))
                 for part in value.split(";") if part.strip()]
    if not isinstance(value, list):
        problems.append(f"{where} 须为列表")
        return []
    links = []
    for item in value:
        if not isinstance(item, dict) or not str(item.get("title", "")).strip() or not str(item.get("url", "")).strip():
            problems.append(f"{where} 的每一项须有 title 和 url")
            continue
        links.append({"title": str(item["title"]).strip()[:128], "url": str(item["url"]).strip()[:512]})
    return links


def _clean(raw: dict, where: str) -> tuple[dict | None, list[str]]:
    problems: list[str] = []
    if not isinstance(raw, dict):
        return None, [f"{where}：不是一个对象"]
    entry_id = str(raw.get("id") or "").strip()
    if not entry_id or len(entry_id) > 64:
        problems.append("id 为空或超过 64 个字符")
    question = str(raw.get("question") or "").strip()
    if not question:
        problems.append("question 为空")
    answer = str(raw.get("answer") or "").strip()
    if not answer:
        problems.append("answer 为空")
    device_type = str(raw.get("device_type") or "").strip()
    if not device_type:
        problems.append("device_type 为空")
    tier = str(raw.get("tier") or "basic").strip()
    if tier not in TIERS:
        problems.append(f"tier 须为 {' 或 '.join(TIERS)}")
    variants = raw.get("variants") or []
    if isinstance(variants, str):
        variants = [v for v in variants.split("|")]
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        problems.append("variants 须为字符串列表")
        variants = []
    docs = _links(raw.get("docs"), "docs", problems)
    videos = _links(raw.get("videos"), "videos", problems)
    if problems:
        return None, [f"{where}（{entry_id or '无 id'}）：{'；'.join(problems)}"]
    return {"id": entry_id, "device_type": device_type[:32], "question": question[:256],
            "variants": [v.strip()[:256] for v in variants if v.strip()], "answer": answer, "tier": tier,
            "docs": docs, "videos": videos}, []


def parse_file(data: bytes, filename: str) -> tuple[list[dict], list[str]]:
    """(clean rows, problems) of a JSON or CSV file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], ["文件不是 UTF-8 编码"]
    if filename.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            return [], [f"CSV 缺少列：{', '.join(missing)}"]
        raws = [(f"第 {i} 行", row) for i, row in enumerate(reader, start=2)]
    else:
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            return [], [f"JSON 格式错误：第 {getattr(exc, 'lineno', '?')} 行"]
        if not isinstance(loaded, list):
            return [], ["JSON 须为条目列表"]
        raws = [(f"第 {i} 条", row) for i, row in enumerate(loaded, start=1)]
    if len(raws) > MAX_ENTRIES:
        return [], [f"条目太多（上限 {MAX_ENTRIES}）"]
    rows, problems, seen = [], [], set()
    for where, raw in raws:
        row, row_problems = _clean(raw, where)
        if row and row["id"] in seen:
            row_problems = [f"{where}（{row['id']}）：id 在文件中重复"]
            row = None
        problems += row_problems
        if row:
            seen.add(row["id"])
            rows.append(row)
    return rows, problems


async def import_entries(data: bytes, filename: str, *, actor: User | None = None,
                         actor_label: str | None = None) -> ImportReport:
    rows, problems = parse_file(data, filename)
    report = ImportReport(rows=problems)
    if problems or not rows:
        if not rows and not problems:
            report.rows = ["文件中没有条目"]
        return report
    async with in_transaction() as conn:
        existing = set(await KBEntry.filter(id__in=[r["id"] for r in rows]).using_db(conn).values_list("id", flat=True))
        for row in rows:
            if row["id"] in existing:
                await KBEntry.filter(id=row["id"]).using_db(conn).update(**{k: v for k, v in row.items() if k != "id"},
                                                                         active=True)
                report.updated += 1
            else:
                await KBEntry.create(**row, using_db=conn)
                report.created += 1
        await bump_version(conn)
        await audit.record("kb.imported", "kb", filename[:64] or "upload", actor=actor, actor_label=actor_label,
                           changes={"created": report.created, "updated": report.updated}, using_db=conn)
    report.accepted = True
    return report


async def bump_version(conn=None) -> int:
    """The knowledge base changed: the new version (workers compare theirs and rebuild)."""
    updated = await KBState.filter(id=1).using_db(conn).update(version=F("version") + 1)
    if not updated:
        await KBState.create(id=1, version=1, using_db=conn)
    return (await KBState.get(id=1).using_db(conn)).version


async def current_version() -> tuple[int, str]:
    """The version and the time of the last change: a database rebuilt from scratch (tests) restarts the count,
    the time tells the two lineages apart."""
    state = await KBState.get_or_none(id=1)
    return (state.version, state.changed_at.isoformat()) if state else (0, "")


async def export_entries(fmt: str = "json") -> bytes:
    entries = await KBEntry.filter(active=True).order_by("id")
    rows = [{f: getattr(e, f) for f in FIELDS} for e in entries]
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2).encode("utf-8")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "variants": "|".join(row["variants"]),
                         "docs": "; ".join(f"{d['title']}|{d['url']}" for d in row["docs"]),
                         "videos": "; ".join(f"{v['title']}|{v['url']}" for v in row["videos"])})
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # BOM: Excel opens it as UTF-8
