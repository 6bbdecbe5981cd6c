"""Telemetry in: validate, dedupe, buffer, then store downsampled and hand each stored batch to the rules.

Two halves, joined by a Redis Stream (``medwx:readings``) so that a burst waits in Redis instead of being dropped
and the HTTP/MQTT side never waits for the database:

- ``accept(gateway, items)`` (any transport): checks each reading (known device of the gateway's hospital, known
  shape, plausible value, time within ``IOT_MAX_AGE``), then one Lua call takes tokens from the gateway's bucket
  (``iot:bucket:<gateway>``), drops readings already seen (``iot:seen:<device>:<metric>:<minute>``, field = time),
  and appends the fresh ones to the stream as one entry. Refused readings are counted per gateway
  (``iot:stats:<gateway>``) and reported back, never stored.
- ``ReadingConsumer`` (every server worker, one consumer group): reads stream entries in batches, upserts them into
  the one-row-per-minute history (``Reading``; a late reading merges into its minute, ``last_value`` stays the latest
  by time), stores error codes, updates ``iot:latest:<device>`` (only with newer times), calls
  ``monitoring.rules.evaluate(batch)``, and acknowledges. Delivery is at least once: an entry whose worker died
  before acknowledging is claimed again by another worker after ``CLAIM_IDLE_MS`` (error codes are stored once;
  the minute counts of that one batch would then be counted twice).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from redis.exceptions import ResponseError
from tortoise import connections
from tortoise.transactions import in_transaction

from core.errors import BadRequest, PayloadTooLarge, ServiceBusy, TooManyRequests
from core.events import EventBus
from core.redis import Redis
from core.settings import Settings
from monitoring.models import Gateway
from repair.models import Device

log = logging.getLogger(__name__)

STREAM = "medwx:readings"
GROUP = "ingest"
MAX_BATCH = 1000  # readings per HTTP request or MQTT message
BURST_SECONDS = 5  # a gateway's bucket holds this many seconds of its rate
FUTURE_SKEW_MS = 5 * 60 * 1000  # a gateway's clock may run this far ahead
CLAIM_IDLE_MS = 60_000
ERROR_CODE = "error_code"  # the metric whose value is a code, stored as ErrorCodeEvent
METRIC_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")
# Values outside these are instrument faults or unit mix-ups, not readings; unknown metrics get a generic bound.
PLAUSIBLE = {
    "temperature": (-200.0, 2000.0),  # °C: freezers to autoclaves and sterilisers
    "pressure": (-1000.0, 100_000.0),  # kPa
    "humidity": (0.0, 100.0),
    "run_hours": (0.0, 1_000_000.0),
    "cycle_count": (0.0, 1e10),
    "voltage": (-100_000.0, 100_000.0),
    "current": (-10_000.0, 10_000.0),
}
ANY_VALUE = (-1e12, 1e12)

REASONS = {
    "malformed": "读数格式有误（需要 device、metric、value）",
    "unknown_device": "该网关所属医院没有此设备",
    "bad_metric": "指标名须为小写字母、数字或下划线（最长 32 个字符）",
    "bad_value": "读数值须为有限数值（错误码为 1–32 个字母、数字或 _ . : -）",
    "absurd_value": "读数值超出该指标的合理范围",
    "bad_time": "时间无法识别（ISO 8601 含时区，或 Unix 秒/毫秒）",
    "too_old": "读数时间过早，已超出可接收的时间范围",
    "in_future": "读数时间晚于当前时间",
}


@dataclass(frozen=True)
class ReadingIn:
    """One checked reading, ready for the buffer."""

    device_id: int
    metric: str
    at_ms: int  # epoch milliseconds, UTC
    value: float | None  # None for an error code
    code: str | None = None

    def encode(self) -> str:
        return f"{self.device_id}|{self.metric}|{self.at_ms}|{self.code if self.code is not None else repr(self.value)}"

    @classmethod
    def decode(cls, line: str) -> "ReadingIn":
        device, metric, at_ms, raw = line.split("|", 3)
        if metric == ERROR_CODE:
            return cls(int(device), metric, int(at_ms), None, raw)
        return cls(int(device), metric, int(at_ms), float(raw))

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.at_ms / 1000, tz=timezone.utc)


# What the rules receive: the fresh readings of one stored batch.
StoredReading = ReadingIn


@dataclass(frozen=True)
class Refusal:
    index: int
    code: str
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "code": self.code, "message": self.message}


@dataclass
class IngestResult:
    accepted: int = 0  # fresh readings now in the buffer
    duplicates: int = 0  # already seen (same device, metric and time): not stored again
    refused: list[Refusal] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "refused": len(self.refused),
                "refusals": [r.as_dict() for r in self.refused[:100]]}


# -- devices a gateway may speak for ----------------------------------------------------------------------------------
class _DeviceDirectory:
    """(hospital, system number) → device id, remembered for a minute: a reading must not cost a query."""

    TTL = 60.0

    def __init__(self) -> None:
        self._known: dict[tuple[int, str], tuple[float, int | None]] = {}

    async def resolve(self, hospital_id: int, numbers: set[str]) -> dict[str, int]:
        now = time.monotonic()
        found: dict[str, int] = {}
        missing = []
        for number in numbers:
            hit = self._known.get((hospital_id, number))
            if hit is not None and hit[0] > now:
                if hit[1] is not None:
                    found[number] = hit[1]
            else:
                missing.append(number)
        if missing:
            rows = await Device.filter(hospital_id=hospital_id, system_number__in=missing).values_list(
                "system_number", "id")
            fetched = dict(rows)
            if len(self._known) > 200_000:
                self._known.clear()
            for number in missing:
                # Unknown numbers are remembered too (shorter), so a flood of them costs no query each.
                self._known[(hospital_id, number)] = (now + (self.TTL if number in fetched else 5.0),
                                                      fetched.get(number))
            found.update(fetched)
        return found

    def clear(self) -> None:
        self._known.clear()


DEVICES = _DeviceDirectory()


# -- checking -----------------------------------------------------------------------------------------------------------
def _time_ms(raw, now_ms: int) -> int | None:
    if raw is None:
        return now_ms  # a device without a clock: the time it arrived
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw):
            return None
        return int(raw if raw > 1e11 else raw * 1000)  # milliseconds, or seconds
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            return None
        if moment.tzinfo is None:  # a local time of unknown zone: hours off, so refused rather than guessed
            return None
        return int(moment.timestamp() * 1000)
    return None


def _check(item, index: int, devices: dict[str, int], now_ms: int, max_age_ms: int) -> ReadingIn | Refusal:
    def refuse(code: str) -> Refusal:
        return Refusal(index, code, REASONS[code])

    if not isinstance(item, Mapping):
        return refuse("malformed")
    device, metric, value = item.get("device"), item.get("metric"), item.get("value")
    if isinstance(device, int) and not isinstance(device, bool):
        device = str(device)
    if not isinstance(device, str) or not device or not isinstance(metric, str) or value is None:
        return refuse("malformed")
    if not METRIC_PATTERN.match(metric):
        return refuse("bad_metric")
    device_id = devices.get(device.strip())
    if device_id is None:
        return refuse("unknown_device")
    at_ms = _time_ms(item.get("t", item.get("time")), now_ms)
    if at_ms is None:
        return refuse("bad_time")
    if at_ms > now_ms + FUTURE_SKEW_MS:
        return refuse("in_future")
    if at_ms < now_ms - max_age_ms:
        return refuse("too_old")
    if metric == ERROR_CODE:
        code = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(code, str) or not CODE_PATTERN.match(code):
            return refuse("bad_value")
        return ReadingIn(device_id, metric, at_ms, None, code)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return refuse("bad_value")
    low, high = PLAUSIBLE.get(metric, ANY_VALUE)
    if not low <= value <= high:
        return refuse("absurd_value")
    return ReadingIn(device_id, metric, at_ms, float(value))


# -- accepting (rate limit + dedupe + buffer, atomically) ------------------------------------------------------------
# KEYS: bucket, stream, stats, then one "seen" key per reading. ARGV: now_ms, rate, capacity, buffer_max, seen_ttl,
# gateway id, then per reading its seen field and its encoding. Returns {fresh, duplicates} or {-1, wait_ms}
# (over the rate: nothing taken) or {-2, 0} (the buffer is full: nothing taken).
_ACCEPT = """
local now, rate, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS - 3
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or cap
local at = tonumber(b[2]) or now
if now > at then tokens = math.min(cap, tokens + (now - at) * rate / 1000) end
if tokens < n then
  redis.call('HINCRBY', KEYS[3], 'rate_limited', n)
  return {-1, math.ceil((n - tokens) * 1000 / rate)}
end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[4]) then
  redis.call('HINCRBY', KEYS[3], 'busy', n)
  return {-2, 0}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - n), 'at', tostring(math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap * 1000 / rate) + 1000)
local ttl = tonumber(ARGV[5])
local lines = {}
for i = 1, n do
  if redis.call('HSETNX', KEYS[3 + i], ARGV[5 + 2 * i], '1') == 1 then
    redis.call('EXPIRE', KEYS[3 + i], ttl)
    lines[#lines + 1] = ARGV[6 + 2 * i]
  end
end
if #lines > 0 then
  redis.call('XADD', KEYS[2], '*', 'g', ARGV[6], 'r', table.concat(lines, '\\n'))
  redis.call('HINCRBY', KEYS[3], 'accepted', #lines)
end
if n > #lines then redis.call('HINCRBY', KEYS[3], 'duplicate', n - #lines) end
return {#lines, n - #lines}
"""


def stats_key(gateway_id: int | str) -> str:
    return f"iot:stats:{gateway_id}"


async def count_unauthenticated(redis: Redis, how_many: int = 1) -> None:
    """Messages refused before any gateway was known (wrong or missing key): counted apart."""
    await redis.hincrby(stats_key("unauthenticated"), "refused", how_many)


async def gateway_stats(redis: Redis, gateway_id: int | str) -> dict[str, int]:
    """What a gateway sent: accepted, duplicate, rate_limited, busy, refused and refused:<reason>."""
    return {k: int(v) for k, v in (await redis.hgetall(stats_key(gateway_id))).items()}


async def accept(gateway: Gateway, items: Sequence, *, redis: Redis, settings: Settings,
                 now_ms: int | None = None) -> IngestResult:
    """Check ``items`` (mappings with device, metric, value, optional t) from ``gateway`` and buffer the good ones.

    Per reading: refused with a reason (counted), a duplicate (counted, not stored again), or accepted. The whole
    message is refused with 429 when it would exceed the gateway's rate, 503 when the buffer is full (nothing of it
    taken: the gateway sends it again), 400/413 when it is not a list or too long."""
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)) or not items:
        raise BadRequest("请求体须含非空的 readings 数组", code="malformed")
    if len(items) > MAX_BATCH:
        raise PayloadTooLarge(f"每次最多 {MAX_BATCH} 条读数", code="too_many_readings")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    numbers = {str(i["device"]).strip() for i in items
               if isinstance(i, Mapping) and isinstance(i.get("device"), (str, int)) and i.get("device") != ""}
    devices = await DEVICES.resolve(gateway.hospital_id, numbers) if numbers else {}
    result = IngestResult()
    good: list[ReadingIn] = []
    max_age_ms = settings.iot_max_age * 1000
    for index, item in enumerate(items):
        checked = _check(item, index, devices, now_ms, max_age_ms)
        (result.refused if isinstance(checked, Refusal) else good).append(checked)
    if result.refused:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(stats_key(gateway.id), "refused", len(result.refused))
            for r in result.refused:
                pipe.hincrby(stats_key(gateway.id), f"refused:{r.code}", 1)
            await pipe.execute()
    if not good:
        return result
    keys = [f"iot:bucket:{gateway.id}", STREAM, stats_key(gateway.id)]
    args: list = [now_ms, gateway.rate_limit, max(gateway.rate_limit * BURST_SECONDS, MAX_BATCH),
                  settings.iot_buffer_max, settings.iot_max_age + 120, gateway.id]
    for r in good:
        keys.append(f"iot:seen:{r.device_id}:{r.metric}:{r.at_ms // 60_000}")
        args.append(f"{r.at_ms}|{r.code}" if r.code is not None else str(r.at_ms))
        args.append(r.encode())
    first, second = await redis.eval(_ACCEPT, len(keys), *keys, *args)
    if first == -1:
        raise TooManyRequests("该网关发送过于频繁，请稍后重发", code="rate_limited",
                              headers={"Retry-After": str(max(1, math.ceil(second / 1000)))},
                              details={"retry_after_ms": second})
    if first == -2:
        raise ServiceBusy("读数缓冲已满，请稍后重发", code="buffer_full", headers={"Retry-After": "2"})
    result.accepted, result.duplicates = first, second
    return result


# -- storing ----------------------------------------------------------------------------------------------------------
_UPSERT = {
    "postgres": """
INSERT INTO iot_reading (device_id, metric, bucket, "count", "min", "max", "sum", last_value, last_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (device_id, metric, bucket) DO UPDATE SET
  "count" = iot_reading."count" + EXCLUDED."count",
  "min" = LEAST(iot_reading."min", EXCLUDED."min"),
  "max" = GREATEST(iot_reading."max", EXCLUDED."max"),
  "sum" = iot_reading."sum" + EXCLUDED."sum",
  last_value = CASE WHEN EXCLUDED.last_at >= iot_reading.last_at THEN EXCLUDED.last_value
                    ELSE iot_reading.last_value END,
  last_at = GREATEST(iot_reading.last_at, EXCLUDED.last_at)""",
    "sqlite": """
INSERT INTO iot_reading (device_id, metric, bucket, "count", "min", "max", "sum", last_value, last_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device_id, metric, bucket) DO UPDATE SET
  "count" = iot_reading."count" + excluded."count",
  "min" = MIN(iot_reading."min", excluded."min"),
  "max" = MAX(iot_reading."max", excluded."max"),
  "sum" = iot_reading."sum" + excluded."sum",
  last_value = CASE WHEN excluded.last_at >= iot_reading.last_at THEN excluded.last_value
                    ELSE iot_reading.last_value END,
  last_at = MAX(iot_reading.last_at, excluded.last_at)""",
}
_ERROR_CODES = {
    "postgres": "INSERT INTO iot_error_code (device_id, code, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    "sqlite": "INSERT INTO iot_error_code (device_id, code, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
}


def _dialect() -> str:
    return "postgres" if connections.get("default").capabilities.dialect == "postgres" else "sqlite"


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


async def store(batch: Sequence[ReadingIn]) -> None:
    """Merge readings into their minutes and store error codes, in one transaction."""
    minutes: dict[tuple[int, str, int], list] = {}
    codes = set()
    for r in batch:
        if r.code is not None:
            codes.add((r.device_id, r.code, r.at_ms))
            continue
        key = (r.device_id, r.metric, r.at_ms // 60_000)
        agg = minutes.get(key)
        if agg is None:
            minutes[key] = [1, r.value, r.value, r.value, r.value, r.at_ms]
            continue
        agg[0] += 1
        agg[1] = min(agg[1], r.value)
        agg[2] = max(agg[2], r.value)
        agg[3] += r.value
        if r.at_ms >= agg[5]:
            agg[4], agg[5] = r.value, r.at_ms
    dialect = _dialect()
    # Sorted: two workers upserting overlapping minutes lock the rows in the same order (no deadlock).
    rows = [[d, m, _utc(minute * 60_000), a[0], a[1], a[2], a[3], a[4], _utc(a[5])]
            for (d, m, minute), a in sorted(minutes.items())]
    async with in_transaction() as conn:
        if rows:
            await conn.execute_many(_UPSERT[dialect], rows)
        if codes:
            await conn.execute_many(_ERROR_CODES[dialect], [[d, c, _utc(ms)] for d, c, ms in sorted(codes)])


# KEYS: one latest-values hash per device. ARGV: groups of (key index, field, time ms, value).
_LATEST = """
for i = 1, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[i])]
  local seen = tonumber(redis.call('HGET', key, ARGV[i + 1] .. '@t') or '-1')
  if tonumber(ARGV[i + 2]) > seen then
    redis.call('HSET', key, ARGV[i + 1], ARGV[i + 3], ARGV[i + 1] .. '@t', ARGV[i + 2])
  end
end
return 0
"""


def latest_key(device_id: int) -> str:
    return f"iot:latest:{device_id}"


async def remember_latest(redis: Redis, batch: Sequence[ReadingIn]) -> None:
    """``iot:latest:<device>``: ``<metric>`` → value (the code for ``error_code``), ``<metric>@t`` → epoch ms."""
    newest: dict[tuple[int, str], ReadingIn] = {}
    for r in batch:
        seen = newest.get((r.device_id, r.metric))
        if seen is None or r.at_ms > seen.at_ms:
            newest[(r.device_id, r.metric)] = r
    if not newest:
        return
    keys: list[str] = []
    index: dict[int, int] = {}
    args: list = []
    for (device_id, metric), r in newest.items():
        if device_id not in index:
            keys.append(latest_key(device_id))
            index[device_id] = len(keys)
        args += [index[device_id], metric, r.at_ms, r.code if r.code is not None else repr(r.value)]
    await redis.eval(_LATEST, len(keys), *keys, *args)


async def latest(redis: Redis, device_id: int) -> dict[str, dict]:
    """A device's latest values: {metric: {"value": float | str, "at": datetime}}."""
    raw = await redis.hgetall(latest_key(device_id))
    out = {}
    for name, value in raw.items():
        if name.endswith("@t") or f"{name}@t" not in raw:
            continue
        out[name] = {"value": value if name == ERROR_CODE else float(value), "at": _utc(int(raw[f"{name}@t"]))}
    return out


# -- the consumer -------------------------------------------------------------------------------------------------------
async def _evaluate_rules(batch: list[ReadingIn], *, redis: Redis, events: EventBus) -> None:
    from monitoring import rules  # the sibling module judging the readings

    await rules.evaluate(batch, redis=redis, events=events)


class ReadingConsumer:
    """Moves buffered readings into the database, the latest-values cache and the rules (one per server worker)."""

    # Entries per read: an entry holds up to MAX_BATCH readings, and a smaller batch reaches the rules sooner.
    def __init__(self, redis: Redis, events: EventBus, *, count: int = 20, block_ms: int = 1000,
                 evaluate=_evaluate_rules) -> None:
        self.redis = redis
        self.events = events
        self.count = count
        self.block_ms = block_ms
        self.evaluate = evaluate
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._task: asyncio.Task | None = None
        self.stored = 0  # readings this consumer stored (for benchmarks and logs)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="iot-readings")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _ensure_group(self) -> None:
        try:
            # "0": entries buffered while no worker ran are stored once one starts.
            await self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _run(self) -> None:
        backlog = True  # first this consumer's own unacknowledged entries (a failed batch), then new ones
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        group_ready = False
        while True:
            try:
                if not group_ready:
                    await self._ensure_group()
                    group_ready = True
                if loop.time() >= next_claim:
                    await self._claim_abandoned()
                    next_claim = loop.time() + CLAIM_IDLE_MS / 2000
                started = loop.time()
                reply = await self.redis.xreadgroup(GROUP, self.name, {STREAM: "0" if backlog else ">"},
                                                    count=self.count, block=None if backlog else self.block_ms)
                entries = [e for _s, es in reply or [] for e in es]
                if backlog and not entries:
                    backlog = False
                    continue
                if not entries:
                    # The in-process Redis answers a blocking read at once: wait a little instead of spinning.
                    if loop.time() - started < self.block_ms / 2000:
                        await asyncio.sleep(min(0.05, self.block_ms / 1000))
                    continue
                await self.handle(entries)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted (an operator, a flushed test database)
                    group_ready = False
                    continue
                log.exception("reading the readings buffer failed; retrying")
                await asyncio.sleep(1)
            except Exception:  # noqa: BLE001 - the database or Redis failed: keep the entries, try again
                log.exception("storing readings failed; retrying")
                backlog = True
                await asyncio.sleep(1)

    async def _claim_abandoned(self) -> None:
        """Entries another worker took but never acknowledged (it died) become this worker's."""
        await self.redis.xautoclaim(STREAM, GROUP, self.name, min_idle_time=CLAIM_IDLE_MS, start_id="0-0",
                                    count=self.count)

    async def handle(self, entries: list) -> None:
        batch: list[ReadingIn] = []
        for entry_id, fields_ in entries:
            if not fields_:  # deleted meanwhile
                continue
            for line in (fields_.get("r") or "").split("\n"):
                if line:
                    try:
                        batch.append(ReadingIn.decode(line))
                    except ValueError:
                        log.error("unreadable buffered reading in %s: %r", entry_id, line[:200])
        if batch:
            await store(batch)
            await remember_latest(self.redis, batch)
            try:
                await self.evaluate(batch, redis=self.redis, events=self.events)
            except Exception:  # noqa: BLE001 - a rule failing must not hold up the storing of readings
                log.exception("rules failed on a batch of %d readings", len(batch))
        ids = [entry_id for entry_id, _ in entries]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, *ids)
            pipe.xdel(STREAM, *ids)  # the stream is a buffer, not a history: its length is the backlog
            await pipe.execute()
        self.stored += len(batch)


async def backlog(redis: Redis) -> int:
    """Entries (batches) waiting to be stored."""
    return await redis.xlen(STREAM)
