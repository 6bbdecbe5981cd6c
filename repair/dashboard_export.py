"""The dashboard's figures as tables: a CSV file (UTF-8 with BOM, so Excel reads the Chinese) and an XLSX workbook
(one sheet per table). Both come from the same tables, so the two files always agree with the dashboard."""

from __future__ import annotations

import csv
import io
from typing import Any

Table = tuple[str, list[str], list[list[Any]]]  # (title, header, rows)

# A cell a spreadsheet would run as a formula (a hospital or model name typed as "=HYPERLINK(...)").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def _blank(value: Any) -> Any:
    return "" if value is None else value


def dashboard_tables(figures: dict) -> list[Table]:
    labels = figures["labels"]
    summary = [
        ["统计开始", figures["period"]["since"]], ["统计结束", figures["period"]["until"]],
        ["工单总数", figures["tickets_total"]], ["维修工单", figures["repair_tickets"]],
        ["设备数", figures["devices"]],
        ["机器人解决", figures["robot_resolved"]], ["机器人解决率", _pct(figures["robot_resolution_rate"])],
        ["客户自修（未派工程师）", figures["customer_repaired"]],
        ["客户自修率", _pct(figures["customer_repair_rate"])],
        ["平均修复时间 MTTR（小时）", _blank(figures["mttr_hours"])],
        ["平均故障间隔 MTBF（天）", _blank(figures["mtbf_days"])],
        ["未结工单", figures["ageing"]["total"]],
    ]
    tables: list[Table] = [
        ("概览", ["指标", "数值"], summary),
        ("按状态", ["状态", "工单数"],
         [[labels["state"].get(k, k), n] for k, n in figures["tickets_by_state"].items()]),
        ("按级别", ["级别", "工单数"],
         [[labels["tier"].get(k, k), n] for k, n in figures["tickets_by_tier"].items()]),
        ("按医院", ["医院", "工单数", "未结"],
         [[h["name"], h["tickets"], h["open"]] for h in figures["tickets_by_hospital"]]),
    ]
    fault_header = ["分组", "设备数", "维修工单", "故障率（次/台/年）", "基础", "高级", "未定级", "机器人解决",
                    "MTTR（小时）", "未结"]
    for key, title in (("failure_by_type", "按设备类型"), ("failure_by_model", "按型号"),
                       ("failure_by_age", "按使用年限")):
        tables.append((title, fault_header, [
            [r["label"], r["devices"], r["repair_tickets"], _blank(r["failure_rate"]), r["tiers"]["basic"],
             r["tiers"]["advanced"], r["tiers"]["unknown"], r["robot_resolved"], _blank(r["mttr_hours"]),
             r["open_tickets"]] for r in figures[key]]))
    ageing = figures["ageing"]
    ages = list(ageing["age_labels"])
    tables.append(("未结工单时长", ["状态", *ageing["age_labels"].values(), "合计"], [
        [labels["state"].get(state, state), *(row[a] for a in ages), ageing["by_state"][state]]
        for state, row in ageing["by_state_and_age"].items()]))
    return tables


def dashboard_csv(figures: dict) -> bytes:
    """The tables one after another, each under its title, a blank line between them."""
    out = io.StringIO()
    writer = csv.writer(out)
    for n, (title, header, rows) in enumerate(dashboard_tables(figures)):
        if n:
            writer.writerow([])
        writer.writerow([title])
        writer.writerow(header)
        writer.writerows([[_safe(c) for c in row] for row in rows])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def dashboard_xlsx(figures: dict) -> bytes:
    """One sheet per table. CPU work: call it from a thread."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, header, rows in dashboard_tables(figures):
        sheet = book.create_sheet(title)
        sheet.append(header)
        for row in rows:
            sheet.append([_safe(c) for c in row])
        sheet.column_dimensions["A"].width = 28
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
