"""``/console/api/v1/dashboard``: the dashboard's numbers (computed by ``repair.dashboard``) and their CSV/XLSX
export. Agents see their hospitals only; administrators every hospital. Engineers have no dashboard."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext.extensions.openapi import openapi

from console.auth import console_user, may_see_hospital, served_hospital_ids
from core.errors import BadRequest, Forbidden
from core.hospitals import get_hospital
from repair.dashboard import dashboard_figures
from repair.dashboard_export import dashboard_csv, dashboard_xlsx

bp = Blueprint("console_dashboard", url_prefix="/console/api/v1")
TAG = "console: dashboard"
PARAMS = ("`hospital_id=` one hospital (default: all the user may see); `since=`, `until=` dates (YYYY-MM-DD, "
          "`until` included) or ISO times; default the last 365 days.")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _moment(request: Request, name: str) -> datetime | None:
    """A query date: ``YYYY-MM-DD`` (``until``: that whole day counts) or an ISO time (naive = UTC)."""
    value = (request.args.get(name) or "").strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            return moment + timedelta(days=1) if name == "until" else moment
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"参数 {name} 的日期格式有误，应为 YYYY-MM-DD", code="invalid_field",
                         details={"field": name}) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


async def _figures(request: Request) -> dict:
    user = await console_user(request, "agent")
    scope = await served_hospital_ids(user)
    value = (request.args.get("hospital_id") or "").strip()
    if value:
        if not value.isdigit():
            raise BadRequest("参数 hospital_id 须为医院编号", code="invalid_field", details={"field": "hospital_id"})
        hospital = await get_hospital(int(value))
        if not may_see_hospital(scope, hospital.id):
            raise Forbidden("您不负责该医院，不能查看它的统计", code="other_hospital", details={"field": "hospital_id"})
        scope = {hospital.id}
    return await dashboard_figures(scope, since=_moment(request, "since"), until=_moment(request, "until"))


def _filename(figures: dict, ext: str) -> str:
    since, until = figures["period"]["since"][:10], figures["period"]["until"][:10]
    return f'attachment; filename="dashboard-{since}-{until}.{ext}"'


@bp.get("/dashboard")
@openapi.definition(summary="Dashboard numbers", description=PARAMS, tag=TAG)
async def dashboard(request: Request) -> HTTPResponse:
    return json(await _figures(request))


@bp.get("/dashboard/export.csv")
@openapi.definition(summary="Dashboard numbers as CSV (UTF-8 with BOM)", description=PARAMS, tag=TAG)
async def export_csv(request: Request) -> HTTPResponse:
    figures = await _figures(request)
    return raw(dashboard_csv(figures), content_type="text/csv; charset=utf-8",
               headers={"Content-Disposition": _filename(figures, "csv")})


@bp.get("/dashboard/export.xlsx")
@openapi.definition(summary="Dashboard numbers as an Excel workbook (one sheet per table)", description=PARAMS,
                    tag=TAG)
async def export_xlsx(request: Request) -> HTTPResponse:
    figures = await _figures(request)
    body = await asyncio.to_thread(dashboard_xlsx, figures)
    return raw(body, content_type=XLSX, headers={"Content-Disposition": _filename(figures, "xlsx")})
