"""The console dashboard's figures, computed from the stored tickets for a set of hospitals and a period.

Built on ``repair.statistics`` (its definitions hold here too: a repair ticket of the period, failure rate,
robot-resolved, MTTR, open); this module only gathers them over several hospitals (an agent serves a few) and adds
the fleet-wide figures:

- *Ticket counts* (by state, tier, kind, hospital): tickets of every kind opened in ``[since, until)``; the state is
  today's. The rates below cover repair tickets only (preventive work is not a fault).
- *Robot resolution rate*: robot-resolved repair tickets / repair tickets of the period.
- *Customer repair rate*: the share of the period's repair tickets that the hospital's own staff resolved with the
  robot's or an agent's remote help, without an engineer's visit: resolved (``done`` or ``closed``) and never
  passed to an engineer (no transition to ``with_engineer``). It includes the robot-resolved ones.
- *MTTR*: mean hours from opening to ``done`` (stored when the ticket reached ``done``) over the period's repair
  tickets that reached it.
- *MTBF*: fleet operating days per repair ticket: devices of the scope × days of the period / repair tickets of the
  period (the reciprocal of the failure rate, in days). None without a repair ticket.
- *Ageing*: open tickets of every kind now, by state and age (not limited to the period).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from datetime import datetime
from typing import Any, Iterable

from core.models import Hospital
from repair.models import Ticket, TicketTransition
from repair.statistics import (AGEING_BUCKETS, TIERS, FaultRow, _ordered, _period, fault_statistics,
                               ticket_ageing)
from repair.tickets import OPEN_STATES, STATE_LABELS

FAILURE_GROUPINGS = {"failure_by_type": "device_type", "failure_by_model": "model", "failure_by_age": "age_band"}
TIER_LABELS = {"basic": "基础", "advanced": "高级", "unknown": "未定级"}
KIND_LABELS = {"repair": "维修", "preventive": "预防性维护"}
RESOLVED_STATES = ("done", "closed")
_SUMMED = [f.name for f in fields(FaultRow) if f.name not in ("key", "label", "years", "repair_hours")]


def _scope_terms(hospital_ids: set[int] | None) -> dict:
    return {} if hospital_ids is None else {"hospital_id__in": sorted(hospital_ids)}


async def _fault_rows(hospital_ids: set[int] | None, by: str, start: datetime, end: datetime) -> list[FaultRow]:
    """``fault_statistics`` over several hospitals: one call each, buckets of the same key added together."""
    if hospital_ids is None:
        return await fault_statistics(None, since=start, until=end, by=by)
    merged: dict[Any, FaultRow] = {}
    for hospital_id in sorted(hospital_ids):
        for row in await fault_statistics(hospital_id, since=start, until=end, by=by):
            total = merged.setdefault(row.key, FaultRow(key=row.key, label=row.label, years=row.years))
            for name in _SUMMED:
                setattr(total, name, getattr(total, name) + getattr(row, name))
            total.repair_hours.extend(row.repair_hours)
    return _ordered(merged, by)


async def _customer_repaired(hospital_ids: set[int] | None, start: datetime, end: datetime) -> int:
    period = {"kind": "repair", "created_at__gte": start, "created_at__lt": end, **_scope_terms(hospital_ids)}
    resolved = set(await Ticket.filter(state__in=RESOLVED_STATES, **period).values_list("id", flat=True))
    if not resolved:
        return 0
    engineered = set(await TicketTransition.filter(ticket_id__in=list(resolved), to_state="with_engineer")
                     .values_list("ticket_id", flat=True))
    return len(resolved - engineered)


async def _ageing(hospital_ids: set[int] | None, now: datetime | None) -> dict:
    if hospital_ids is None:
        return (await ticket_ageing(None, now=now)).as_dict()
    matrix = {state: {key: 0 for key, _, _ in AGEING_BUCKETS} for state in OPEN_STATES}
    for hospital_id in sorted(hospital_ids):
        one = await ticket_ageing(hospital_id, now=now)
        for state, ages in one.by_state_and_age.items():
            for key, n in ages.items():
                matrix[state][key] += n
    by_state = {state: sum(ages.values()) for state, ages in matrix.items()}
    by_age = {key: sum(matrix[s][key] for s in OPEN_STATES) for key, _, _ in AGEING_BUCKETS}
    return {"total": sum(by_state.values()), "by_state": by_state, "by_age": by_age, "by_state_and_age": matrix,
            "age_labels": {key: label for key, label, _ in AGEING_BUCKETS}}


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def dashboard_figures(hospital_ids: Iterable[int] | None = None, *, since=None, until=None,
                            now: datetime | None = None) -> dict:
    """Every dashboard number for ``hospital_ids`` (None: all hospitals; an empty set: none, all zeros) over
    ``[since, until)`` (default: the last 365 days), as JSON-ready values."""
    scope = None if hospital_ids is None else {int(h) for h in hospital_ids}
    start, end = _period(since, until, now)
    tickets = await Ticket.filter(created_at__gte=start, created_at__lt=end, **_scope_terms(scope)).values(
        "hospital_id", "state", "tier", "kind")
    by_state = {state: 0 for state in STATE_LABELS}
    by_tier = {tier: 0 for tier in TIERS}
    by_kind = {kind: 0 for kind in KIND_LABELS}
    per_hospital: Counter = Counter()
    open_per_hospital: Counter = Counter()
    for t in tickets:
        by_state[t["state"]] = by_state.get(t["state"], 0) + 1
        by_tier[t["tier"] if t["tier"] in ("basic", "advanced") else "unknown"] += 1
        by_kind[t["kind"]] = by_kind.get(t["kind"], 0) + 1
        per_hospital[t["hospital_id"]] += 1
        open_per_hospital[t["hospital_id"]] += int(t["state"] in OPEN_STATES)
    names = dict(await Hospital.filter(id__in=list(per_hospital)).values_list("id", "name")) if per_hospital else {}
    by_hospital = [{"id": h, "name": names.get(h, f"医院 {h}"), "tickets": n, "open": open_per_hospital[h]}
                   for h, n in sorted(per_hospital.items(), key=lambda item: (-item[1], names.get(item[0], "")))]

    failure = {name: await _fault_rows(scope, by, start, end) for name, by in FAILURE_GROUPINGS.items()}
    # The group grouping puts every repair ticket of the period in exactly one bucket: the fleet's totals.
    totals = await _fault_rows(scope, "group", start, end)
    repair_tickets = sum(r.repair_tickets for r in totals)
    robot_resolved = sum(r.robot_resolved for r in totals)
    devices = sum(r.devices for r in totals)
    hours = [h for r in totals for h in r.repair_hours]
    customer_repaired = await _customer_repaired(scope, start, end)
    days = (end - start).total_seconds() / 86400

    return {
        "period": {"since": start.isoformat(), "until": end.isoformat(), "days": round(days, 2)},
        "hospital_ids": None if scope is None else sorted(scope),
        "tickets_total": len(tickets),
        "tickets_by_state": by_state,
        "tickets_by_tier": by_tier,
        "tickets_by_kind": by_kind,
        "tickets_by_hospital": by_hospital,
        "repair_tickets": repair_tickets,
        "devices": devices,
        "robot_resolved": robot_resolved,
        "robot_resolution_rate": _ratio(robot_resolved, repair_tickets),
        "customer_repaired": customer_repaired,
        "customer_repair_rate": _ratio(customer_repaired, repair_tickets),
        "repaired_to_done": len(hours),
        "mttr_hours": round(sum(hours) / len(hours), 2) if hours else None,
        "mtbf_days": round(devices * days / repair_tickets, 2) if repair_tickets else None,
        **{name: [r.as_dict() for r in rows] for name, rows in failure.items()},
        "ageing": await _ageing(scope, now),
        "labels": {"state": STATE_LABELS, "tier": TIER_LABELS, "kind": KIND_LABELS},
    }
