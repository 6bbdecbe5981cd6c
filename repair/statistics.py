"""Fault statistics, open-ticket ageing and per-device maintenance profiles, computed from the stored tickets.

The dashboard and the IoT early warning read these numbers; pages never compute them. A hospital holds thousands of
devices and tickets, not millions, so the queries fetch only the columns needed (``values``) and group in Python
where the grouping is not a column (age and score bands); ageing is counted by the database.

What the numbers mean (one definition, so the dashboard and the early warning agree):
- A *repair ticket of the period*: kind ``repair``, opened in ``[since, until)``.
- It belongs to the device it was opened for. A group ticket without a device belongs to each member the reporter
  pointed at (once per bucket); one pointed at no member ("the line") counts only in the ``group`` grouping.
- *Devices* of a bucket: those not retired, plus retired ones with a repair ticket in the period (they were in use).
- *Failure rate*: repair tickets per device per year of the period.
- *Robot-resolved*: closed, and its last close came straight from ``answered_by_robot``.
- *MTTR*: mean hours from opening to ``done`` over the period's tickets that reached ``done``.
- *Open*: the period's repair tickets still in an open state (``done`` waits for the reporter: not open).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from tortoise.functions import Count

from core.errors import NotFound, Unprocessable
from repair._shared import ref_id
from repair.devices import device_type_label
from repair.models import Device, DeviceGroup, Ticket, TicketTransition
from repair.tickets import OPEN_STATES

GROUPINGS = ("device_type", "model", "age_band", "score_band", "group")
TIERS = ("basic", "advanced", "unknown")
YEAR = timedelta(days=365)

# (key, label, fewest completed years), youngest first.
AGE_BANDS = (("lt1", "不满1年", 0), ("1-3", "1–3年", 1), ("3-5", "3–5年", 3), ("5-10", "5–10年", 5),
             ("ge10", "10年及以上", 10))
AGE_UNKNOWN = ("unknown", "安装日期未知")
SCORE_BANDS = (("90-100", "90–100分", 90), ("75-89", "75–89分", 75), ("50-74", "50–74分", 50),
               ("lt50", "50分以下", -10**9))
UNGROUPED = "未分组"
# (key, label, youngest age in the bucket)
AGEING_BUCKETS = (("lt4h", "4小时内", timedelta(0)), ("4-24h", "4–24小时", timedelta(hours=4)),
                  ("1-3d", "1–3天", timedelta(days=1)), ("gt3d", "3天以上", timedelta(days=3)))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _moment(value: Any, name: str) -> datetime:
    """An aware UTC datetime from a datetime (naive = UTC) or a date (its midnight, UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    raise Unprocessable(f"统计时间 {name} 无效", code="bad_period")


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def completed_years(install_date: date | None, on: date) -> int | None:
    if install_date is None:
        return None
    return on.year - install_date.year - ((on.month, on.day) < (install_date.month, install_date.day))


def age_band(install_date: date | None, on: date) -> tuple[str, str]:
    """(key, label) of a device's age band on a day; a future install date counts as under a year."""
    years = completed_years(install_date, on)
    if years is None:
        return AGE_UNKNOWN
    key, label = AGE_BANDS[0][:2]
    for band_key, band_label, floor in AGE_BANDS:
        if years >= floor:
            key, label = band_key, band_label
    return key, label


def score_band(score: int) -> tuple[str, str]:
    return next((key, label) for key, label, floor in SCORE_BANDS if score >= floor)


# -- fault statistics ------------------------------------------------------------------------------------------------
@dataclass
class FaultRow:
    """One bucket of devices (a type, a model, an age or score band, a group) and its repair tickets in the period."""

    key: str | int | None
    label: str
    devices: int = 0
    repair_tickets: int = 0
    basic: int = 0
    advanced: int = 0
    unknown_tier: int = 0
    robot_resolved: int = 0
    open_tickets: int = 0
    years: float = 1.0  # length of the period
    repair_hours: list[float] = field(default_factory=list, repr=False)

    @property
    def failure_rate(self) -> float | None:
        """Repair tickets per device per year; None for a bucket without devices."""
        if not self.devices or self.years <= 0:
            return None
        return round(self.repair_tickets / self.devices / self.years, 4)

    @property
    def basic_share(self) -> float | None:
        return _ratio(self.basic, self.repair_tickets)

    @property
    def advanced_share(self) -> float | None:
        return _ratio(self.advanced, self.repair_tickets)

    @property
    def unknown_share(self) -> float | None:
        return _ratio(self.unknown_tier, self.repair_tickets)

    @property
    def robot_resolved_share(self) -> float | None:
        return _ratio(self.robot_resolved, self.repair_tickets)

    @property
    def mttr_hours(self) -> float | None:
        """Mean hours from opening to done; None when no ticket of the bucket reached done."""
        if not self.repair_hours:
            return None
        return round(sum(self.repair_hours) / len(self.repair_hours), 2)

    def add(self, ticket: dict, robot_closed: bool) -> None:
        self.repair_tickets += 1
        tier = ticket["tier"] if ticket["tier"] in ("basic", "advanced") else "unknown"
        if tier == "basic":
            self.basic += 1
        elif tier == "advanced":
            self.advanced += 1
        else:
            self.unknown_tier += 1
        if robot_closed:
            self.robot_resolved += 1
        if ticket["state"] in OPEN_STATES:
            self.open_tickets += 1
        if ticket["done_at"] is not None:
            self.repair_hours.append((ticket["done_at"] - ticket["created_at"]).total_seconds() / 3600)

    def as_dict(self) -> dict:
        return {
            "key": self.key, "label": self.label, "devices": self.devices, "repair_tickets": self.repair_tickets,
            "failure_rate": self.failure_rate,
            "tiers": {"basic": self.basic, "advanced": self.advanced, "unknown": self.unknown_tier},
            "basic_share": self.basic_share, "advanced_share": self.advanced_share,
            "unknown_share": self.unknown_share, "robot_resolved": self.robot_resolved,
            "robot_resolved_share": self.robot_resolved_share, "mttr_hours": self.mttr_hours,
            "open_tickets": self.open_tickets,
        }


def _period(since: Any, until: Any, now: datetime | None = None) -> tuple[datetime, datetime]:
    end = _moment(until, "until") if until is not None else (now or _now())
    start = _moment(since, "since") if since is not None else end - YEAR
    if start >= end:
        raise Unprocessable("统计开始时间须早于结束时间", code="bad_period")
    return start, end


async def fault_statistics(hospital_id=None, *, since=None, until=None, by: str = "device_type") -> list[FaultRow]:
    """Repair tickets of ``[since, until)`` (default: the last 365 days) grouped by ``by`` — one of
    ``device_type | model | age_band | score_band | group``. Buckets with neither devices nor tickets are left out,
    so a hospital without data gets ``[]``. Bands come in band order, other buckets by ticket count."""
    if by not in GROUPINGS:
        raise Unprocessable("不支持的统计分组", code="bad_grouping")
    start, end = _period(since, until)
    hospital = ref_id(hospital_id)
    scope = {} if hospital is None else {"hospital_id": hospital}
    years = (end - start).total_seconds() / YEAR.total_seconds()

    devices = {d["id"]: d for d in await Device.filter(**scope).values(
        "id", "device_type", "model", "install_date", "maintenance_score", "group_id", "status")}
    tickets = await _period_tickets(scope, start, end)
    robot_closed = await _robot_closed(scope, start, end)
    members = await _pointed_members(scope, start, end)
    on = end.date()

    def bucket_of(device: dict) -> tuple[Any, str]:
        if by == "device_type":
            return device["device_type"], device_type_label(device["device_type"]) or "未分类"
        if by == "model":
            return device["model"], device["model"] or "未填型号"
        if by == "age_band":
            return age_band(device["install_date"], on)
        if by == "score_band":
            return score_band(device["maintenance_score"])
        return device["group_id"], UNGROUPED

    rows: dict[Any, FaultRow] = {}

    def row(key: Any, label: str) -> FaultRow:
        if key not in rows:
            rows[key] = FaultRow(key=key, label=label, years=years)
        return rows[key]

    busy: set[int] = set()  # devices with a ticket in the period (counted even when retired since)
    for ticket in tickets:
        pointed = [ticket["device_id"]] if ticket["device_id"] else members.get(ticket["id"], [])
        pointed = [devices[d] for d in pointed if d in devices]
        busy.update(d["id"] for d in pointed)
        if by == "group":
            group_id = ticket["group_id"] or (pointed[0]["group_id"] if pointed else None)
            keys = {group_id: UNGROUPED}
        else:
            keys = dict(bucket_of(d) for d in pointed)
        for key, label in keys.items():
            row(key, label).add(ticket, ticket["id"] in robot_closed)
    for device in devices.values():
        if device["status"] != "retired" or device["id"] in busy:
            row(*bucket_of(device)).devices += 1

    if by == "group":
        names = dict(await DeviceGroup.filter(id__in=[k for k in rows if k is not None]).values_list("id", "name"))
        for key, r in rows.items():
            if key is not None:
                r.label = names.get(key, f"设备组 {key}")
    return _ordered(rows, by)


def _ordered(rows: dict[Any, FaultRow], by: str) -> list[FaultRow]:
    if by in ("age_band", "score_band"):
        order = [b[0] for b in (AGE_BANDS if by == "age_band" else SCORE_BANDS)] + [AGE_UNKNOWN[0]]
        return sorted(rows.values(), key=lambda r: order.index(r.key))
    # The ungrouped bucket last; otherwise most tickets first, then by label for a stable order.
    return sorted(rows.values(), key=lambda r: (r.key is None, -r.repair_tickets, r.label, str(r.key)))


def _ticket_filter(scope: dict, start: datetime, end: datetime, prefix: str = "") -> dict:
    terms = {"kind": "repair", "created_at__gte": start, "created_at__lt": end, **scope}
    return {prefix + k: v for k, v in terms.items()}


async def _period_tickets(scope: dict, start: datetime, end: datetime) -> list[dict]:
    return await Ticket.filter(**_ticket_filter(scope, start, end)).values(
        "id", "device_id", "group_id", "state", "tier", "created_at", "done_at")


async def _robot_closed(scope: dict, start: datetime, end: datetime) -> set[int]:
    """Ids of the period's closed tickets whose last close came from the robot's answer (a reopened ticket that
    later closed after an engineer's work is not the robot's)."""
    closes = await TicketTransition.filter(
        to_state="closed", ticket__state="closed", **_ticket_filter(scope, start, end, "ticket__")
    ).order_by("id").values_list("ticket_id", "from_state")
    last = dict(closes)  # ordered by id: the last close of each ticket wins
    return {ticket_id for ticket_id, from_state in last.items() if from_state == "answered_by_robot"}


async def _pointed_members(scope: dict, start: datetime, end: datetime) -> dict[int, list[int]]:
    """For the period's group tickets without a device: the member devices the reporter pointed at."""
    pairs = await Ticket.filter(device_id=None, group_id__isnull=False,
                                **_ticket_filter(scope, start, end)).values_list("id", "member_devices__id")
    members: dict[int, list[int]] = defaultdict(list)
    for ticket_id, device_id in pairs:
        if device_id is not None:
            members[ticket_id].append(device_id)
    return members


# -- open-ticket ageing ----------------------------------------------------------------------------------------------
@dataclass
class TicketAgeing:
    """Open tickets (all kinds) now, by state and by how long ago they were opened."""

    total: int
    by_state: dict[str, int]
    by_age: dict[str, int]
    by_state_and_age: dict[str, dict[str, int]]

    def as_dict(self) -> dict:
        return {**asdict(self), "age_labels": {key: label for key, label, _ in AGEING_BUCKETS}}


async def ticket_ageing(hospital_id=None, *, now: datetime | None = None) -> TicketAgeing:
    """Counted in the database: one grouped count per age bucket. Every open state and bucket is present (0 when
    none), so an empty hospital gets zeros."""
    now = _moment(now, "now") if now is not None else _now()
    hospital = ref_id(hospital_id)
    scope = {"state__in": list(OPEN_STATES)}
    if hospital is not None:
        scope["hospital_id"] = hospital
    matrix = {state: {key: 0 for key, _, _ in AGEING_BUCKETS} for state in OPEN_STATES}
    bounds = [b[2] for b in AGEING_BUCKETS] + [None]
    for (key, _, youngest), oldest in zip(AGEING_BUCKETS, bounds[1:]):
        # Age in [youngest, oldest): opened in (now - oldest, now - youngest]. A clock-skewed future
        # opening counts as the youngest.
        terms = {"created_at__lte": now - youngest} if youngest else {}
        if oldest is not None:
            terms["created_at__gt"] = now - oldest
        counted = await Ticket.filter(**scope, **terms).annotate(n=Count("id")).group_by("state").values_list(
            "state", "n")
        for state, n in counted:
            matrix[state][key] += n
    by_state = {state: sum(ages.values()) for state, ages in matrix.items()}
    by_age = {key: sum(matrix[s][key] for s in OPEN_STATES) for key, _, _ in AGEING_BUCKETS}
    return TicketAgeing(total=sum(by_state.values()), by_state=by_state, by_age=by_age, by_state_and_age=matrix)


# -- the maintenance profile of one device ---------------------------------------------------------------------------
@dataclass
class FaultBrief:
    number: str
    state: str
    tier: str | None
    created_at: datetime
    description: str

    def as_dict(self) -> dict:
        return {"number": self.number, "state": self.state, "tier": self.tier,
                "created_at": self.created_at.isoformat(), "description": self.description}


@dataclass
class GroupSummary:
    id: int
    name: str
    devices: int
    repair_count: int  # closed repairs over the group's life
    repair_tickets_12m: int
    failure_rate: float | None
    mttr_hours: float | None
    open_tickets: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DeviceProfile:
    device_id: int
    system_number: str
    name: str
    device_type: str
    model: str
    status: str
    install_date: date | None
    age_years: float | None
    age_band: str
    maintenance_score: int
    score_band: str
    repair_count: int
    faults_12m: dict[str, int]  # basic | advanced | unknown
    latest_fault: dict[str, FaultBrief | None]  # the most recent fault of each tier (any time)
    mtbf_days: float | None  # mean days between repair tickets; None with fewer than two
    days_since_last_repair: int | None
    days_since_last_preventive: int | None
    failure_rate: float  # this device's repair tickets in the last 12 months (per year)
    peer_failure_rate: float | None  # the same type in the same hospital, same 12 months
    relative_risk: float | None  # failure_rate / peer_failure_rate
    group: GroupSummary | None

    def as_dict(self) -> dict:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["install_date"] = self.install_date.isoformat() if self.install_date else None
        data["latest_fault"] = {tier: (f.as_dict() if f else None) for tier, f in self.latest_fault.items()}
        data["group"] = self.group.as_dict() if self.group else None
        return data


async def maintenance_profile(device_id, *, now: datetime | None = None) -> DeviceProfile:
    """The device's fault history and how it compares with its peers. Its faults are the repair tickets opened for
    it and the group tickets that pointed at it."""
    device = await Device.get_or_none(id=ref_id(device_id))
    if device is None:
        raise NotFound("设备不存在", code="device_not_found")
    now = _moment(now, "now") if now is not None else _now()
    year_ago = now - YEAR
    fields_ = ("id", "number", "kind", "state", "tier", "created_at", "description")
    own = {t["id"]: t for t in await Ticket.filter(device_id=device.id).values(*fields_)}
    own.update({t["id"]: t for t in await Ticket.filter(member_devices__id=device.id).values(*fields_)})
    history = sorted(own.values(), key=lambda t: (t["created_at"], t["id"]))
    repairs = [t for t in history if t["kind"] == "repair"]
    preventive = [t for t in history if t["kind"] == "preventive"]

    def tier_of(t: dict) -> str:
        return t["tier"] if t["tier"] in ("basic", "advanced") else "unknown"

    recent = [t for t in repairs if year_ago <= t["created_at"] < now]
    faults = {tier: sum(1 for t in recent if tier_of(t) == tier) for tier in TIERS}
    latest: dict[str, FaultBrief | None] = {tier: None for tier in TIERS}
    for t in repairs:  # oldest first: the last one seen of each tier stays
        latest[tier_of(t)] = FaultBrief(t["number"], t["state"], t["tier"], t["created_at"], t["description"])

    mtbf = None
    if len(repairs) >= 2:
        span = repairs[-1]["created_at"] - repairs[0]["created_at"]
        mtbf = round(span.total_seconds() / 86400 / (len(repairs) - 1), 2)

    def days_since(items: list[dict]) -> int | None:
        return max(0, (now - items[-1]["created_at"]).days) if items else None

    peers = await fault_statistics(device.hospital_id, since=year_ago, until=now, by="device_type")
    peer_rate = next((r.failure_rate for r in peers if r.key == device.device_type), None)
    rate = float(len(recent))  # the window is one year
    today = now.date()
    years = completed_years(device.install_date, today)
    age_years = None if years is None else round((today - device.install_date).days / 365.25, 1)
    return DeviceProfile(
        device_id=device.id, system_number=device.system_number, name=device.name, device_type=device.device_type,
        model=device.model, status=device.status, install_date=device.install_date, age_years=age_years,
        age_band=age_band(device.install_date, today)[0], maintenance_score=device.maintenance_score,
        score_band=score_band(device.maintenance_score)[0], repair_count=device.repair_count, faults_12m=faults,
        latest_fault=latest, mtbf_days=mtbf, days_since_last_repair=days_since(repairs),
        days_since_last_preventive=days_since(preventive), failure_rate=rate, peer_failure_rate=peer_rate,
        relative_risk=round(rate / peer_rate, 2) if peer_rate else None,
        group=await _group_summary(device, year_ago, now) if device.group_id else None,
    )


async def _group_summary(device: Device, since: datetime, until: datetime) -> GroupSummary | None:
    group = await DeviceGroup.get_or_none(id=device.group_id)
    if group is None:
        return None
    rows = await fault_statistics(device.hospital_id, since=since, until=until, by="group")
    stats = next((r for r in rows if r.key == group.id), FaultRow(key=group.id, label=group.name))
    return GroupSummary(id=group.id, name=group.name, devices=stats.devices, repair_count=group.repair_count,
                        repair_tickets_12m=stats.repair_tickets, failure_rate=stats.failure_rate,
                        mttr_hours=stats.mttr_hours, open_tickets=stats.open_tickets)
