"""The rules that look at stored history rather than the readings in hand: error-code frequency (counted in
``ErrorCodeEvent``) and run hours since the last service (the run-hours counter against its value then).

Each is asked once per device and batch, and only when the batch carries the metric the rule watches.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from monitoring.models import ErrorCodeEvent, Reading
from repair.models import Ticket

SERVICE_CACHE_SECONDS = 60.0
# device id -> (cached at, time of the last service, run hours then)
_service: dict[int, tuple[float, datetime | None, float]] = {}


async def counted_findings(series: dict, devices: dict, book) -> dict[int, list]:
    from monitoring.rules import Finding

    found: dict[int, list] = {}
    for (device_id, metric), points in series.items():
        for rule in book.for_metric(devices[device_id].device_type, metric):
            finding: Finding | None = None
            if rule.kind == "error_frequency":
                finding = await _error_frequency(rule, device_id, points)
            elif rule.kind == "run_hours":
                finding = await _run_hours(rule, device_id, points)
            if finding is not None:
                found.setdefault(device_id, []).append(finding)
    return found


async def _error_frequency(rule, device_id: int, points: list):
    from monitoring.rules import Finding

    codes = rule.params.get("codes") or []
    seen = [p for p in points if p.code and (not codes or p.code in codes)]
    if not seen:
        return None
    latest = max(seen, key=lambda p: p.at)
    window = timedelta(minutes=rule.params.get("window_minutes", 60))
    query = ErrorCodeEvent.filter(device_id=device_id, at__gt=latest.at - window, at__lte=latest.at)
    if codes:
        query = query.filter(code__in=codes)
    count = await query.count()
    if count < rule.params["count"]:
        return None
    recent = await query.order_by("-at").limit(10).values_list("code", flat=True)
    minutes = f"{window.total_seconds() / 60:g}"
    text = f"{minutes} 分钟内报错 {count} 次（最近：{'、'.join(dict.fromkeys(recent))}）"
    return Finding(device_id, rule, latest.code, latest.at, text,
                   {"count": count, "window_minutes": float(minutes), "codes": list(dict.fromkeys(recent))})


async def last_service(device_id: int) -> tuple[datetime | None, float]:
    """(time of the device's last finished service, the run-hours counter then); cached for a minute per worker.
    A service is any ticket of the device that reached ``done``. Without one the counter counts from 0; with one
    older than the stored history, from the earliest value stored after it."""
    cached = _service.get(device_id)
    if cached and time.monotonic() - cached[0] < SERVICE_CACHE_SECONDS:
        return cached[1], cached[2]
    ticket = await Ticket.filter(device_id=device_id, done_at__isnull=False).order_by("-done_at").first()
    at, hours = None, 0.0
    if ticket is not None:
        at = ticket.done_at
        before = await Reading.filter(device_id=device_id, metric="run_hours", bucket__lte=at) \
            .order_by("-bucket").first()
        if before is not None:
            hours = before.last_value
        else:
            after = await Reading.filter(device_id=device_id, metric="run_hours", bucket__gt=at) \
                .order_by("bucket").first()
            hours = after.min if after is not None else 0.0
    _service[device_id] = (time.monotonic(), at, hours)
    return at, hours


def forget_all() -> None:
    _service.clear()


def forget_service(device_id: int) -> None:
    """A ticket of the device was done: its next run-hours count starts again."""
    _service.pop(device_id, None)


async def _run_hours(rule, device_id: int, points: list):
    from monitoring.rules import Finding

    latest = max((p for p in points if p.value is not None), key=lambda p: p.at, default=None)
    if latest is None:
        return None
    since_at, base = await last_service(device_id)
    hours = latest.value - base
    if hours <= rule.params["max_hours"]:
        return None
    since = f"上次维护（{since_at:%Y-%m-%d}）以来" if since_at else "投入使用以来"
    text = f"{since}已运行 {hours:.0f} 小时，超过保养周期 {rule.params['max_hours']:g} 小时"
    return Finding(device_id, rule, latest.value, latest.at, text,
                   {"hours_since_service": round(hours, 1), "max_hours": rule.params["max_hours"],
                    "last_service_at": since_at.isoformat() if since_at else None})
