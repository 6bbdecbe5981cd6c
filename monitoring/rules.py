"""Early-warning rules: data an administrator edits, checked against every stored batch of readings.

Rules live in the ``MaintenanceRule`` table, one row per (device type, name); ``device_type`` ``*`` applies to every
type. They come from a JSON file (``IOT_RULES_FILE``, loaded into an empty table at start;
``python -m monitoring load-rules FILE`` replaces the set: rows missing from the file are deactivated, never deleted,
since alerts point at them). The file's shape is ``monitoring/data/rules.json``.

Kinds and their ``params``:
- ``threshold``: ``min`` and/or ``max``; ``consecutive`` readings beyond (default 1) before it fires.
- ``rate``: change per minute, ``max_per_min`` and ``direction`` (``rise`` | ``fall`` | ``both``, default both),
  measured against a reference reading at least ``window_s`` (default 60) seconds older, which then moves on: a
  sensor sampled every second with a little noise would otherwise show huge per-minute rates between neighbours.
- ``ewma``: the device's own baseline — exponentially weighted mean and variance (``alpha``, default 0.1); fires when
  a reading is more than ``sigmas`` (default 4) standard deviations away, once ``warmup`` readings (default 30) have
  built the baseline; ``min_sigma`` keeps a flat signal from firing on noise.
- ``error_frequency``: ``count`` error codes (``codes``; empty = any) within ``window_minutes``; metric ``error_code``.
- ``run_hours``: the run-hours counter minus its value at the last service (the last ticket of the device that
  reached ``done``) above ``max_hours``.

Per (device, metric) the state the stateful kinds need (last time, rate references, EWMA mean/variance, counters) is a
Redis hash, read and written once per batch with a pipeline, so several ingest workers share it. Two workers updating
the same device at the same instant may lose one EWMA step: a baseline is a trend, not a ledger.
A reading older than the state's last one (out of order) is checked against thresholds only.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.errors import Unprocessable
from core.events import EventBus
from core.redis import Redis
from monitoring.models import MaintenanceRule, PreventiveSchedule
from repair.models import Device

log = logging.getLogger(__name__)

KINDS = ("threshold", "rate", "ewma", "error_frequency", "run_hours")
SEVERITIES = ("low", "medium", "high", "critical")
ANY_TYPE = "*"
ERROR_METRIC = "error_code"
STATE_KEY = "iot:rule-state:{}:{}"
STATE_TTL = 30 * 86400
RULES_TTL = 10.0  # seconds a worker keeps its copy of the rules
DEVICE_TTL = 60.0
KIND_LABELS = {"threshold": "阈值", "rate": "变化速率", "ewma": "偏离自身基线", "error_frequency": "错误码频繁",
               "run_hours": "运行时长"}


# -- the rules as data -----------------------------------------------------------------------------------------------
def _bad(message: str, field_: str, index: int | None = None, section: str = "rules") -> Unprocessable:
    where = f"第 {index + 1} 条" if index is not None else ""
    return Unprocessable(f"{where}{message}", code="invalid_rule",
                         details={"field": field_, "index": index, "section": section})


def _number(params: dict, key: str, index: int | None, *, positive: bool = False, required: bool = False):
    value = params.get(key)
    if value is None:
        if required:
            raise _bad(f"缺少参数 {key}", f"params.{key}", index)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(f"参数 {key} 须为数字", f"params.{key}", index)
    if positive and value <= 0:
        raise _bad(f"参数 {key} 须大于 0", f"params.{key}", index)
    return value


def check_rule(raw: Any, index: int | None = None) -> dict:
    """One rule from the file or an API, normalised; a bad one raises ``Unprocessable`` naming its field."""
    if not isinstance(raw, dict):
        raise _bad("规则须为对象", "", index)
    text = {k: str(raw.get(k) or "").strip() for k in ("device_type", "name", "metric", "kind", "title")}
    for key in ("device_type", "name", "metric", "kind"):
        if not text[key]:
            raise _bad(f"缺少 {key}", key, index)
    if len(text["device_type"]) > 32 or len(text["name"]) > 64 or len(text["metric"]) > 32 or len(text["title"]) > 64:
        raise _bad("名称太长", "name", index)
    kind = text["kind"]
    if kind not in KINDS:
        raise _bad(f"未知的规则类型“{kind}”（可用：{'、'.join(KINDS)}）", "kind", index)
    severity = str(raw.get("severity") or "medium").strip()
    if severity not in SEVERITIES:
        raise _bad(f"未知的严重程度“{severity}”（可用：{'、'.join(SEVERITIES)}）", "severity", index)
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise _bad("params 须为对象", "params", index)
    clean: dict = {}
    if kind == "threshold":
        clean["min"] = _number(params, "min", index)
        clean["max"] = _number(params, "max", index)
        if clean["min"] is None and clean["max"] is None:
            raise _bad("阈值规则须有 min 或 max", "params.max", index)
        if clean["min"] is not None and clean["max"] is not None and clean["min"] >= clean["max"]:
            raise _bad("min 须小于 max", "params.min", index)
        clean["consecutive"] = int(_number(params, "consecutive", index, positive=True) or 1)
    elif kind == "rate":
        clean["max_per_min"] = _number(params, "max_per_min", index, positive=True, required=True)
        clean["window_s"] = _number(params, "window_s", index, positive=True) or 60
        clean["direction"] = str(params.get("direction") or "both")
        if clean["direction"] not in ("rise", "fall", "both"):
            raise _bad("direction 须为 rise、fall 或 both", "params.direction", index)
    elif kind == "ewma":
        clean["alpha"] = _number(params, "alpha", index, positive=True) or 0.1
        if clean["alpha"] >= 1:
            raise _bad("alpha 须在 0 与 1 之间", "params.alpha", index)
        clean["sigmas"] = _number(params, "sigmas", index, positive=True) or 4.0
        clean["warmup"] = int(_number(params, "warmup", index, positive=True) or 30)
        clean["min_sigma"] = _number(params, "min_sigma", index) or 0.0
    elif kind == "error_frequency":
        codes = params.get("codes") or []
        if not isinstance(codes, list) or not all(isinstance(c, (str, int)) for c in codes):
            raise _bad("codes 须为错误码列表", "params.codes", index)
        clean["codes"] = [str(c).strip() for c in codes if str(c).strip()]  # as the device reports them
        clean["count"] = int(_number(params, "count", index, positive=True, required=True))
        clean["window_minutes"] = _number(params, "window_minutes", index, positive=True) or 60
    elif kind == "run_hours":
        clean["max_hours"] = _number(params, "max_hours", index, positive=True, required=True)
    return {"device_type": text["device_type"], "name": text["name"], "title": text["title"] or text["name"],
            "metric": text["metric"], "kind": kind, "severity": severity, "params": clean,
            "active": raw.get("active", True) is not False}


def check_schedule(raw: Any, index: int | None = None) -> dict:
    if not isinstance(raw, dict) or not str(raw.get("device_type") or "").strip():
        raise _bad("缺少 device_type", "device_type", index, "preventive")
    days = raw.get("interval_days")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise _bad("interval_days 须为 1–3650 的整数", "interval_days", index, "preventive")
    return {"device_type": str(raw["device_type"]).strip()[:32], "interval_days": days,
            "title": str(raw.get("title") or "").strip()[:64], "active": raw.get("active", True) is not False}


@dataclass
class LoadReport:
    rules: int = 0
    schedules: int = 0
    deactivated: int = 0

    def text(self) -> str:
        return f"已载入规则 {self.rules} 条、定期保养计划 {self.schedules} 条；停用旧规则 {self.deactivated} 条"


async def load_rules(data: Any) -> LoadReport:
    """Replace the rule set with ``data`` (``{"rules": [...], "preventive": [...]}``): all of it or nothing."""
    if not isinstance(data, dict) or not isinstance(data.get("rules", []), list) \
            or not isinstance(data.get("preventive", []), list):
        raise Unprocessable("规则文件须为含 rules、preventive 列表的 JSON 对象", code="invalid_rules_file")
    rules = [check_rule(r, i) for i, r in enumerate(data.get("rules", []))]
    schedules = [check_schedule(s, i) for i, s in enumerate(data.get("preventive", []))]
    seen: set = set()
    for i, r in enumerate(rules):
        if (r["device_type"], r["name"]) in seen:
            raise _bad(f"规则名“{r['name']}”在同一设备类型下重复", "name", i)
        seen.add((r["device_type"], r["name"]))
    report = LoadReport(rules=len(rules), schedules=len(schedules))
    async with in_transaction() as conn:
        keep = []
        for r in rules:
            row, _ = await MaintenanceRule.update_or_create(
                device_type=r["device_type"], name=r["name"], using_db=conn,
                defaults={k: r[k] for k in ("title", "metric", "kind", "severity", "params", "active")})
            keep.append(row.id)
        report.deactivated = await MaintenanceRule.filter(active=True).exclude(id__in=keep).using_db(conn) \
            .update(active=False)
        types = []
        for s in schedules:
            await PreventiveSchedule.update_or_create(
                device_type=s["device_type"], using_db=conn,
                defaults={"interval_days": s["interval_days"], "title": s["title"], "active": s["active"]})
            types.append(s["device_type"])
        await PreventiveSchedule.filter(active=True).exclude(device_type__in=types).using_db(conn) \
            .update(active=False)
    BOOK.expire()
    return report


def read_rules_file(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise Unprocessable(f"无法读取规则文件：{exc.strerror}", code="rules_file_unreadable") from None
    except ValueError as exc:
        raise Unprocessable(f"规则文件不是有效的 JSON：{exc}", code="invalid_rules_file") from None


def forget_cached() -> None:
    """Drop this worker's copies of rules, devices and service times (a new start, or a new database)."""
    from monitoring import signals

    BOOK.expire()
    DEVICES.clear()
    signals.forget_all()


async def ensure_rules(path: Path) -> LoadReport | None:
    """Load the shipped (or configured) rules into an empty table; an administrator's edits are never overwritten."""
    forget_cached()
    if await MaintenanceRule.exists():
        return None
    try:
        return await load_rules(read_rules_file(path))
    except IntegrityError:
        return None  # another worker starting at the same moment loaded them


# -- this worker's copy of the rules and devices ---------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    id: int
    device_type: str
    name: str
    title: str
    metric: str
    kind: str
    severity: str
    params: dict


class RuleBook:
    """Active rules by (device type, metric), re-read at most every ``RULES_TTL`` seconds."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], list[Rule]] = {}
        self._loaded = 0.0

    def expire(self) -> None:
        self._loaded = 0.0

    async def refresh(self) -> None:
        if time.monotonic() - self._loaded < RULES_TTL:
            return
        by_key: dict[tuple[str, str], list[Rule]] = defaultdict(list)
        for row in await MaintenanceRule.filter(active=True).order_by("id"):
            by_key[(row.device_type, row.metric)].append(Rule(row.id, row.device_type, row.name, row.title,
                                                              row.metric, row.kind, row.severity, row.params))
        self._by_key, self._loaded = dict(by_key), time.monotonic()

    def for_metric(self, device_type: str, metric: str) -> list[Rule]:
        return self._by_key.get((device_type, metric), []) + self._by_key.get((ANY_TYPE, metric), [])


BOOK = RuleBook()


@dataclass(frozen=True)
class DeviceBrief:
    id: int
    hospital_id: int
    device_type: str
    status: str


class DeviceCache:
    def __init__(self) -> None:
        self._items: dict[int, tuple[float, DeviceBrief]] = {}

    async def get(self, ids: Iterable[int]) -> dict[int, DeviceBrief]:
        now = time.monotonic()
        found = {i: b for i, (t, b) in ((i, self._items[i]) for i in ids if i in self._items) if now - t < DEVICE_TTL}
        missing = [i for i in ids if i not in found]
        if missing:
            for row in await Device.filter(id__in=missing).values("id", "hospital_id", "device_type", "status"):
                brief = DeviceBrief(row["id"], row["hospital_id"], row["device_type"], row["status"])
                self._items[brief.id] = (now, brief)
                found[brief.id] = brief
        return found

    def clear(self) -> None:
        self._items.clear()


DEVICES = DeviceCache()


# -- evaluation ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    device_id: int
    metric: str
    value: float | None
    at: datetime
    code: str | None = None  # error codes


@dataclass
class Finding:
    """A rule that fired for a device: what was seen, in numbers (``detail``) and in words (``text``)."""

    device_id: int
    rule: Rule
    value: Any
    at: datetime
    text: str
    detail: dict = field(default_factory=dict)

    def evidence(self) -> dict:
        return {"rule": self.rule.name, "title": self.rule.title, "kind": self.rule.kind, "metric": self.rule.metric,
                "severity": self.rule.severity, "value": self.value, "at": self.at.isoformat(), "text": self.text,
                "detail": self.detail}


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, timezone.utc)
    return None


def as_point(reading: Any) -> Point | None:
    """A stored reading (an object or a dict: device id, metric, value, time, optional error code) as a Point."""
    device = _get(reading, "device_id", "device")
    device_id = device if isinstance(device, int) else getattr(device, "id", None)
    metric = _get(reading, "metric")
    at = _moment(_get(reading, "at", "time", "ts"))
    if not isinstance(device_id, int) or not metric or at is None:
        return None
    code = _get(reading, "code")
    value = _get(reading, "value")
    if metric == ERROR_METRIC and code is None and value is not None:
        code = value
    if code is not None:
        code = str(code).strip()
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return Point(device_id, str(metric), float(number) if number is not None else None, at, code)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _threshold(rule: Rule, p: Point, state: dict, fresh: bool) -> Finding | None:
    lo, hi = rule.params.get("min"), rule.params.get("max")
    beyond = (hi is not None and p.value > hi) or (lo is not None and p.value < lo)
    need = rule.params.get("consecutive", 1)
    if need > 1:  # counted in arrival order of time: a late reading neither counts nor fires
        if not fresh:
            return None
        counter = f"c{rule.id}"
        state[counter] = int(state.get(counter, 0)) + 1 if beyond else 0
        if int(state[counter]) < need:
            return None
    elif not beyond:
        return None
    if hi is not None and p.value > hi:
        text = f"{rule.metric} 读数 {_fmt(p.value)} 超过上限 {_fmt(hi)}"
    else:
        text = f"{rule.metric} 读数 {_fmt(p.value)} 低于下限 {_fmt(lo)}"
    if need > 1:
        text += f"（连续 {need} 次）"
    return Finding(p.device_id, rule, p.value, p.at, text, {"min": lo, "max": hi, "consecutive": need})


def _rate(rule: Rule, p: Point, state: dict) -> Finding | None:
    key, now = f"r{rule.id}", p.at.timestamp()
    if key not in state:
        state[key] = f"{now!r},{p.value!r}"
        return None
    prev_at, prev_value = (float(x) for x in state[key].split(","))
    if now - prev_at < rule.params.get("window_s", 60):
        return None
    state[key] = f"{now!r},{p.value!r}"
    minutes = (now - prev_at) / 60
    per_min = (p.value - prev_value) / minutes
    direction, limit = rule.params.get("direction", "both"), rule.params["max_per_min"]
    if (direction == "rise" and per_min <= limit) or (direction == "fall" and -per_min <= limit) or \
            (direction == "both" and abs(per_min) <= limit):
        return None
    text = f"{rule.metric} 每分钟变化 {_fmt(per_min)}（{_fmt(prev_value)} → {_fmt(p.value)}），超过 {_fmt(limit)}"
    return Finding(p.device_id, rule, p.value, p.at, text,
                   {"per_min": round(per_min, 4), "previous": prev_value, "max_per_min": limit})


def _ewma(rule: Rule, p: Point, state: dict) -> Finding | None:
    """Check against the baseline, then fold the reading in (fired or not: a lasting shift becomes the new normal
    in time, and a lasting fault is kept open by its alert, not by the baseline)."""
    key = f"e{rule.id}"
    n, mean, var = (float(x) for x in state.get(key, "0,0,0").split(","))
    alpha, sigmas = rule.params.get("alpha", 0.1), rule.params.get("sigmas", 4.0)
    finding = None
    if n >= rule.params.get("warmup", 30):
        sigma = max(math.sqrt(max(var, 0.0)), rule.params.get("min_sigma", 0.0), 1e-9)
        z = (p.value - mean) / sigma
        if abs(z) > sigmas:
            text = (f"{rule.metric} 读数 {_fmt(p.value)} 偏离该设备自身基线 {_fmt(mean)}（σ {_fmt(sigma)}）"
                    f" {abs(z):.1f} 个标准差")
            finding = Finding(p.device_id, rule, p.value, p.at, text,
                              {"baseline": round(mean, 4), "sigma": round(sigma, 4), "z": round(z, 2),
                               "samples": int(n)})
    if n == 0:
        mean, var = p.value, 0.0
    else:
        diff = p.value - mean
        incr = alpha * diff
        mean, var = mean + incr, (1 - alpha) * (var + diff * incr)
    state[key] = f"{n + 1:.0f},{mean!r},{var!r}"
    return finding


async def evaluate(readings: Iterable[Any], *, redis: Redis, events: EventBus) -> list:
    """Check a stored batch of readings against the rules; returns the ``DeviceAlert`` rows this batch opened.

    ``readings``: objects or dicts with ``device_id`` (or ``device``), ``metric``, ``value``, ``at`` (datetime or
    epoch seconds) and, for ``error_code`` readings, the code (``code`` or ``value``). Unknown devices and
    malformed items are skipped (ingest refuses them before storing)."""
    from monitoring import alerts, signals

    points = [p for p in map(as_point, readings) if p is not None]
    if not points:
        return []
    await BOOK.refresh()
    devices = await DEVICES.get(list({p.device_id for p in points}))
    series: dict[tuple[int, str], list[Point]] = defaultdict(list)
    for p in points:
        brief = devices.get(p.device_id)
        if brief is not None and brief.status != "retired" and BOOK.for_metric(brief.device_type, p.metric):
            series[(p.device_id, p.metric)].append(p)
    if not series:
        return []
    keys = list(series)
    async with redis.pipeline(transaction=False) as pipe:
        for device_id, metric in keys:
            pipe.hgetall(STATE_KEY.format(device_id, metric))
        states = await pipe.execute()
    findings: dict[int, list[Finding]] = defaultdict(list)
    changed = []
    for (device_id, metric), state in zip(keys, states):
        rules = BOOK.for_metric(devices[device_id].device_type, metric)
        found = _check_series(rules, sorted(series[(device_id, metric)], key=lambda p: p.at), state)
        for f in found:
            if all(f.rule.id != g.rule.id for g in findings[device_id]):  # one finding per rule and batch
                findings[device_id].append(f)
        changed.append((STATE_KEY.format(device_id, metric), state))
    async with redis.pipeline(transaction=False) as pipe:
        for key, state in changed:
            if state:
                pipe.hset(key, mapping=state)
                pipe.expire(key, STATE_TTL)
        await pipe.execute()
    for device_id, found in (await signals.counted_findings(series, devices, BOOK)).items():
        findings[device_id].extend(found)
    if not findings:
        return []
    return await alerts.raise_alerts(findings, devices, redis=redis, events=events)


def _check_series(rules: list[Rule], points: list[Point], state: dict) -> list[Finding]:
    found: list[Finding] = []
    last_at = float(state["t"]) if "t" in state else None
    for p in points:
        if p.value is None:
            continue
        fresh = last_at is None or p.at.timestamp() > last_at
        for rule in rules:
            finding = None
            if rule.kind == "threshold":
                finding = _threshold(rule, p, state, fresh)
            elif fresh and rule.kind == "rate":
                finding = _rate(rule, p, state)
            elif fresh and rule.kind == "ewma":
                finding = _ewma(rule, p, state)
            if finding is not None:
                found.append(finding)
        if fresh:
            last_at = p.at.timestamp()
            state["t"] = repr(last_at)
    return found
