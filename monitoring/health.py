"""What the console shows of a device's health: latest values, the reading history for charts, its alerts, and its
risk (the open alerts' severities weighed by the maintenance profile, ``monitoring.risk``). Read only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from core.errors import NotFound, Unprocessable
from core.redis import Redis
from monitoring import ingest, risk
from monitoring.models import DeviceAlert, Reading
from repair.devices import device_type_label
from repair.models import Device
from repair.statistics import maintenance_profile

MAX_HOURS = 24 * 31
MAX_POINTS = 720  # per metric: older minutes are merged into wider buckets so a chart stays light


def alert_out(alert: DeviceAlert, *, with_device: bool = False) -> dict:
    """An alert for the console; its ``ticket`` (and ``device`` with ``with_device``) must be prefetched."""
    out = {
        "id": alert.id, "device_id": alert.device_id, "rule_id": alert.rule_id, "state": alert.state,
        "severity": alert.severity, "severity_label": risk.SEVERITY_LABELS.get(alert.severity, alert.severity),
        "risk_score": alert.risk_score, "risk_band": risk.band(alert.risk_score)[0],
        "title": alert.evidence.get("title", ""), "text": alert.evidence.get("text", ""),
        "evidence": alert.evidence, "hits": alert.hits, "opened_at": alert.opened_at.isoformat(),
        "last_seen_at": alert.last_seen_at.isoformat(),
        "closed_at": alert.closed_at.isoformat() if alert.closed_at else None,
        "ticket": None,
    }
    if alert.ticket_id and alert.ticket is not None:
        out["ticket"] = {"id": alert.ticket.id, "number": alert.ticket.number, "state": alert.ticket.state}
    if with_device:
        out["device"] = device_out(alert.device)
    return out


def device_out(device: Device) -> dict:
    return {"id": device.id, "system_number": device.system_number, "name": device.name,
            "device_type": device.device_type, "device_type_label": device_type_label(device.device_type),
            "model": device.model, "status": device.status, "hospital_id": device.hospital_id}


async def _series(device_id: int, since: datetime, until: datetime) -> dict[str, list[dict]]:
    rows = await Reading.filter(device_id=device_id, bucket__gte=since, bucket__lt=until).order_by(
        "metric", "bucket").values("metric", "bucket", "count", "min", "max", "sum", "last_value")
    by_metric: dict[str, list[dict]] = {}
    for r in rows:
        by_metric.setdefault(r["metric"], []).append(r)
    minutes = max(1, int((until - since).total_seconds() // 60))
    width = max(1, -(-minutes // MAX_POINTS))  # minutes per point
    out = {}
    for metric, items in by_metric.items():
        points: list[dict] = []
        for r in items:
            slot = int(r["bucket"].timestamp() // 60 // width)
            if points and points[-1]["_slot"] == slot:
                p = points[-1]
                p["count"] += r["count"]
                p["sum"] += r["sum"]
                p["min"], p["max"], p["last"] = min(p["min"], r["min"]), max(p["max"], r["max"]), r["last_value"]
            else:
                points.append({"_slot": slot, "t": r["bucket"].isoformat(), "count": r["count"], "sum": r["sum"],
                               "min": r["min"], "max": r["max"], "last": r["last_value"]})
        out[metric] = [{"t": p["t"], "count": p["count"], "min": p["min"], "max": p["max"],
                        "mean": round(p["sum"] / p["count"], 4) if p["count"] else None, "last": p["last"]}
                       for p in points]
    return out


async def device_health(device_id: int, *, redis: Redis, hours: int = 24, now: datetime | None = None) -> dict:
    """Latest values, the last ``hours`` of readings per metric (at most ``MAX_POINTS`` points each), alerts (open
    first, then the 20 most recent closed), risk and the maintenance profile."""
    if not 1 <= hours <= MAX_HOURS:
        raise Unprocessable(f"hours 须在 1–{MAX_HOURS} 之间", code="invalid_field", details={"field": "hours"})
    device = await Device.get_or_none(id=device_id)
    if device is None:
        raise NotFound("设备不存在", code="device_not_found")
    now = now or datetime.now(timezone.utc)
    latest = await ingest.latest(redis, device.id)
    alerts = await DeviceAlert.filter(device_id=device.id, state="open").order_by("-risk_score", "-id") \
        .prefetch_related("ticket")
    closed = await DeviceAlert.filter(device_id=device.id, state="closed").order_by("-id").limit(20) \
        .prefetch_related("ticket")
    profile = await maintenance_profile(device.id, now=now)
    current = risk.score([a.severity for a in alerts], profile)
    return {
        "device": device_out(device),
        "latest": {m: {"value": v["value"], "at": v["at"].isoformat()} for m, v in sorted(latest.items())},
        "series": await _series(device.id, now - timedelta(hours=hours), now + timedelta(minutes=1)),
        "hours": hours,
        "alerts": [alert_out(a) for a in alerts] + [alert_out(a) for a in closed],
        "risk": current.as_dict(),
        "profile": profile.as_dict(),
    }


async def list_alerts(scope: set[int] | None, *, state: str = "open", hospital_id: int | None = None,
                      limit: int = 100) -> list[dict]:
    """Alerts of the hospitals in ``scope`` (None: all), highest risk first (open) or newest first (closed)."""
    if state not in ("open", "closed", "all"):
        raise Unprocessable("state 须为 open、closed 或 all", code="invalid_field", details={"field": "state"})
    query = DeviceAlert.all()
    if state != "all":
        query = query.filter(state=state)
    if scope is not None:
        query = query.filter(device__hospital_id__in=list(scope))
    if hospital_id is not None:
        query = query.filter(device__hospital_id=hospital_id)
    order = ("-risk_score", "-id") if state == "open" else ("-id",)
    rows = await query.order_by(*order).limit(max(1, min(limit, 500))).prefetch_related("device", "ticket")
    return [alert_out(a, with_device=True) for a in rows]
