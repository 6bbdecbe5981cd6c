"""Health advice from new vitals, graded normal / watch / see_doctor / urgent, worded for a lay person.

The rules are data (``care/data/advice_rules.json``, or the file the ``ADVICE_RULES`` setting names) so that an
administrator can change thresholds and wording without a release. Each rule cites its source guideline. For each
measured kind the *first* rule whose condition holds gives the advice (specific rules, such as a history or an age,
come before the general ones). A table is validated as a whole when it is loaded: an error names the rule and the
field, and a broken edit never replaces a working table (the server keeps the last good one and logs why).

Advice never names a diagnosis or a drug: texts are checked for such words at load time.

``python -m care.advice [FILE]`` checks a rule file and prints a summary.
"""

from __future__ import annotations

import json
import logging
import math
import string
import sys
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

DEFAULT_RULES = Path(__file__).resolve().parent / "data" / "advice_rules.json"
GRADES = ("normal", "watch", "see_doctor", "urgent")  # in rising order of concern
GRADE_NAMES = {"normal": "正常", "watch": "需留意", "see_doctor": "建议就医", "urgent": "请立即就医"}
# Kinds advice is given for; ``bmi`` is derived from body weight and height.
KINDS = ("blood_pressure", "heart_rate", "body_temperature", "spo2", "respiratory_rate", "blood_glucose", "bmi")
SEXES = ("male", "female", "other", "unknown")
_OPERATORS = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
              "lte": lambda a, b: a <= b, "eq": lambda a, b: a == b}
_PATIENT_FIELDS = {"age", "sex", "history", "fasting"}
_KIND_FIELDS = {"blood_pressure": {"systolic", "diastolic"}, "blood_glucose": {"value"}, "bmi": {"value"}}
# Words that would make a text a diagnosis or a prescription: refused in rule texts.
FORBIDDEN_WORDS = ("确诊", "诊断为", "您患有", "你患有", "服用", "剂量", "毫克", "处方")
_READING = {
    "blood_pressure": "{systolic}/{diastolic} mmHg", "heart_rate": "{value} 次/分", "body_temperature": "{value}℃",
    "spo2": "{value}%", "respiratory_rate": "{value} 次/分", "blood_glucose": "{value} mmol/L",
    "bmi": "{value}",
}


class RulesError(ValueError):
    """The rule table is not usable; the message says where (rule id, field) and why."""


# -- the table ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    id: str
    kinds: tuple[str, ...]
    when: dict | None
    grade: str
    text: str
    source: str  # the citation itself, not its key
    departments: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleTable:
    rules: tuple[Rule, ...]
    histories: dict[str, tuple[str, ...]]  # name -> words matched in visit diagnoses
    departments: dict[str, tuple[str, ...]]  # department -> other names the HIS may give it
    summaries: dict[str, str]
    disclaimer: str
    path: str = ""

    def department_names(self, department: str) -> set[str]:
        """The department and its aliases, folded for comparison."""
        return {_fold(department), *(_fold(a) for a in self.departments.get(department, ()))}


def _fold(text: str) -> str:
    return str(text or "").strip().casefold()


def _fail(where: str, message: str) -> RulesError:
    return RulesError(f"{where}: {message}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _fail(where, "must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _check_condition(cond: Any, where: str, kinds: tuple[str, ...], histories: dict) -> None:
    if not isinstance(cond, dict) or not cond:
        raise _fail(where, "a condition is a non-empty object")
    fields_ok = set(_PATIENT_FIELDS)
    for kind in kinds:
        fields_ok |= _KIND_FIELDS.get(kind, {"value"})
    for key, test in cond.items():
        at = f"{where}.{key}"
        if key in ("all", "any"):
            if not isinstance(test, list) or not test:
                raise _fail(at, "must be a non-empty list of conditions")
            for n, sub in enumerate(test):
                _check_condition(sub, f"{at}[{n}]", kinds, histories)
        elif key == "not":
            _check_condition(test, at, kinds, histories)
        elif key not in fields_ok:
            raise _fail(at, f"unknown field for {'/'.join(kinds)} (known: {', '.join(sorted(fields_ok))})")
        elif key == "sex":
            if test not in SEXES:
                raise _fail(at, f"must be one of {', '.join(SEXES)}")
        elif key == "fasting":
            if not isinstance(test, bool):
                raise _fail(at, "must be true or false")
        elif key == "history":
            names = [test] if isinstance(test, str) else test
            if not isinstance(names, list) or not names:
                raise _fail(at, "must name a history from `histories` (or a list of them)")
            for name in names:
                if name not in histories:
                    raise _fail(at, f"unknown history {name!r} (add it to `histories`)")
        else:  # a number
            if not isinstance(test, dict) or not test:
                raise _fail(at, "must be an object of comparisons such as {\"gte\": 140}")
            for op, bound in test.items():
                if op not in _OPERATORS:
                    raise _fail(f"{at}.{op}", f"unknown operator (known: {', '.join(_OPERATORS)})")
                if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                    raise _fail(f"{at}.{op}", "must be a number")


def _check_text(text: Any, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise _fail(where, "must be a non-empty text")
    for word in FORBIDDEN_WORDS:
        if word in text:
            raise _fail(where, f"advice must not diagnose or prescribe (found {word!r})")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise _fail(where, f"bad placeholder: {exc}") from None
    if names - {"reading"}:
        raise _fail(where, f"unknown placeholder(s) {sorted(names - {'reading'})} (only {{reading}})")
    return text.strip()


def parse_table(doc: Any, *, path: str = "") -> RuleTable:
    """A validated table from the file's JSON; ``RulesError`` naming the first problem."""
    if not isinstance(doc, dict):
        raise _fail("file", "must be a JSON object")
    sources = doc.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise _fail("sources", "must map source ids to citations")
    for key, text in sources.items():
        if not isinstance(text, str) or not text.strip():
            raise _fail(f"sources.{key}", "must be a citation text")
    histories = {k: tuple(_fold(w) for w in _strings(v, f"histories.{k}"))
                 for k, v in (doc.get("histories") or {}).items()}
    departments = {k: _strings(v, f"departments.{k}") for k, v in (doc.get("departments") or {}).items()}
    summaries = doc.get("summaries") or {}
    for grade in GRADES:
        _check_text(summaries.get(grade), f"summaries.{grade}")
    disclaimer = str(doc.get("disclaimer") or "")
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise _fail("rules", "must be a non-empty list")
    rules, seen = [], set()
    for n, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            raise _fail(f"rules[{n}]", "must be an object")
        rid = raw.get("id")
        where = f"rule {rid!r}" if isinstance(rid, str) and rid else f"rules[{n}]"
        if not isinstance(rid, str) or not rid.strip():
            raise _fail(where, "`id` is missing")
        if rid in seen:
            raise _fail(where, "the id is used twice")
        seen.add(rid)
        kinds = raw.get("kind")
        kinds = tuple([kinds] if isinstance(kinds, str) else kinds or ())
        if not kinds or any(k not in KINDS for k in kinds):
            raise _fail(f"{where}.kind", f"must be one of {', '.join(KINDS)}")
        if raw.get("grade") not in GRADES:
            raise _fail(f"{where}.grade", f"must be one of {', '.join(GRADES)}")
        if raw.get("source") not in sources:
            raise _fail(f"{where}.source", "must be a key of `sources` (every rule cites its guideline)")
        when = raw.get("when")
        if when is not None:
            _check_condition(when, f"{where}.when", kinds, histories)
        rule_departments = _strings(raw.get("departments") or [], f"{where}.departments") \
            if raw.get("departments") else ()
        for dep in rule_departments:
            if dep not in departments:
                raise _fail(f"{where}.departments", f"unknown department {dep!r} (add it to `departments`)")
        unknown = set(raw) - {"id", "kind", "when", "grade", "text", "source", "departments", "specialties", "note"}
        if unknown:
            raise _fail(where, f"unknown key(s) {sorted(unknown)}")
        rules.append(Rule(
            id=rid, kinds=kinds, when=when, grade=raw["grade"], text=_check_text(raw.get("text"), f"{where}.text"),
            source=sources[raw["source"]].strip(), departments=rule_departments,
            specialties=_strings(raw["specialties"], f"{where}.specialties") if raw.get("specialties") else ()))
    return RuleTable(tuple(rules), histories, departments, dict(summaries), disclaimer, path)


def load_table(path: Path | str) -> RuleTable:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"{path}: no such file") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise RulesError(f"{path}: not valid JSON ({exc})") from None
    try:
        return parse_table(doc, path=str(path))
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None


class _Current:
    """The table in use: reloaded when its file changes; a broken edit keeps the last good table."""

    def __init__(self) -> None:
        self.path: Path = DEFAULT_RULES
        self.table: RuleTable | None = None
        self.stamp: tuple | None = None

    def _stamp(self) -> tuple | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def configure(self, path: Path | str | None) -> RuleTable:
        """Use ``path`` (None or "": the shipped table); loaded now, so a bad file stops the start-up."""
        self.path = Path(path) if path else DEFAULT_RULES
        self.stamp = self._stamp()
        self.table = load_table(self.path)
        return self.table

    def get(self) -> RuleTable:
        if self.table is None:
            return self.configure(self.path)
        stamp = self._stamp()
        if stamp != self.stamp:
            self.stamp = stamp
            try:
                self.table = load_table(self.path)
                log.info("advice rules reloaded from %s", self.path)
            except RulesError as exc:
                log.error("advice rules not reloaded, the previous ones stay in use: %s", exc)
        return self.table


_CURRENT = _Current()
configure = _CURRENT.configure
current_table = _CURRENT.get


# -- evaluation ------------------------------------------------------------------------------------------------------
@dataclass
class Reading:
    """One thing to advise on: a kind and its numbers in the stored unit."""

    kind: str
    values: dict[str, float]
    fasting: bool = False
    observation_id: int | None = None
    measured_at: datetime | None = None


@dataclass(frozen=True)
class PatientFacts:
    age: int | None = None
    sex: str = "unknown"
    history: frozenset[str] = frozenset()  # names from the table's ``histories`` found in the visit diagnoses


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _holds(cond: dict, reading: Reading, facts: PatientFacts) -> bool:
    for key, test in cond.items():
        if key == "all":
            ok = all(_holds(c, reading, facts) for c in test)
        elif key == "any":
            ok = any(_holds(c, reading, facts) for c in test)
        elif key == "not":
            ok = not _holds(test, reading, facts)
        elif key == "sex":
            ok = facts.sex == test
        elif key == "fasting":
            ok = reading.fasting == test
        elif key == "history":
            ok = bool(facts.history & set([test] if isinstance(test, str) else test))
        else:
            value = facts.age if key == "age" else reading.values.get(key)
            ok = value is not None and all(_OPERATORS[op](value, bound) for op, bound in test.items())
        if not ok:
            return False
    return True


def _shown(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def reading_text(reading: Reading) -> str:
    return _READING[reading.kind].format_map({k: _shown(v) for k, v in reading.values.items()})


def evaluate(table: RuleTable, reading: Reading, facts: PatientFacts) -> dict | None:
    """The advice item for one reading (first matching rule), or None when no rule speaks of it."""
    for rule in table.rules:
        if reading.kind in rule.kinds and (rule.when is None or _holds(rule.when, reading, facts)):
            try:
                text = rule.text.format(reading=reading_text(reading))
            except KeyError:  # a reading lacking a number its wording shows (e.g. no diastolic)
                continue
            return {"kind": reading.kind, "grade": rule.grade, "text": text, "source": rule.source,
                    "rule": rule.id, "reading": reading_text(reading), "observation_id": reading.observation_id,
                    "measured_at": reading.measured_at.isoformat() if reading.measured_at else None,
                    "_departments": rule.departments, "_specialties": rule.specialties}
    return None


@dataclass
class Advice:
    grade: str  # the most concerning item's grade; "normal" when nothing was advised on
    items: list[dict]  # {kind, grade, text, source, rule, reading, observation_id, measured_at}
    departments: list[str]  # where to see a doctor, most pressing first (empty when all is normal)
    specialties: list[str] = field(default_factory=list)  # what a fitting doctor's specialties mention
    summary: str = ""
    disclaimer: str = ""

    @property
    def grade_name(self) -> str:
        return GRADE_NAMES[self.grade]

    def as_dict(self) -> dict:
        return asdict(self) | {"grade_name": self.grade_name}


def combine(table: RuleTable, items: list[dict]) -> Advice:
    """Items (from ``evaluate``) → the advice: overall grade, departments of the abnormal items, most pressing first."""
    ranked = sorted(items, key=lambda i: -GRADES.index(i["grade"]))  # stable: equal grades keep the kinds' order
    departments: list[str] = []
    specialties: list[str] = []
    for item in ranked:
        if item["grade"] != "normal":
            departments += [d for d in item["_departments"] if d not in departments]
            specialties += [s for s in item["_specialties"] if s not in specialties]
    grade = ranked[0]["grade"] if ranked else "normal"
    clean = [{k: v for k, v in item.items() if not k.startswith("_")} for item in ranked]
    return Advice(grade=grade, items=clean, departments=departments, specialties=specialties,
                  summary=table.summaries[grade], disclaimer=table.disclaimer)


def age_on(birth: date | None, day: date) -> int | None:
    if birth is None:
        return None
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def history_names(table: RuleTable, diagnoses: Iterable[str]) -> frozenset[str]:
    text = " ".join(_fold(d) for d in diagnoses if d)
    return frozenset(name for name, words in table.histories.items() if any(w in text for w in words))


# -- from stored observations --------------------------------------------------------------------------------------
def _values(obs: Any) -> dict[str, float]:
    """The numbers of an observation's ``values``; a single number is also ``value``."""
    raw = getattr(obs, "values", None) or {}
    numbers = {k: n for k, v in raw.items() if (n := _number(v)) is not None}
    if "value" not in numbers and len(numbers) == 1:
        numbers["value"] = next(iter(numbers.values()))
    return numbers


def _is_fasting(obs: Any) -> bool:
    raw = getattr(obs, "values", None) or {}
    if raw.get("fasting") is True:
        return True
    return _fold(raw.get("context") or raw.get("meal") or "") in {"fasting", "空腹", "before-breakfast"}


def _height_cm(obs: Any) -> float | None:
    value = _values(obs).get("value")
    if value is None or value <= 0:
        return None
    unit = _fold(getattr(obs, "unit", ""))
    return value * 100 if unit == "m" or (unit not in ("cm", "[in_i]") and value < 3) else value


def readings(observations: Iterable[Any], *, height: Any = None) -> list[Reading]:
    """What to advise on: each observation of an advised kind, and the BMI when a body weight and a height (from
    the same observations, else ``height``, the latest stored) are known."""
    out: list[Reading] = []
    weight = None
    for obs in observations:
        kind = getattr(obs, "kind", "")
        if kind == "body_weight":
            weight = obs
        elif kind == "body_height":
            height = obs
        elif kind in KINDS and (values := _values(obs)):
            out.append(Reading(kind, values, fasting=_is_fasting(obs), observation_id=getattr(obs, "id", None),
                               measured_at=getattr(obs, "measured_at", None)))
    if weight is not None and height is not None:
        kg, cm = _values(weight).get("value"), _height_cm(height)
        if kg and cm and kg > 0:
            bmi = round(kg / (cm / 100) ** 2, 1)
            out.append(Reading("bmi", {"value": bmi}, observation_id=getattr(weight, "id", None),
                               measured_at=getattr(weight, "measured_at", None)))
    return out


async def patient_facts(table: RuleTable, patient: Any, day: date | None = None) -> PatientFacts:
    """Age on ``day``, sex, and the histories found in visit diagnoses and diagnoses kept without a visit."""
    from care.models import PatientRecord, Visit

    diagnoses = [*await Visit.filter(patient_id=patient.id).exclude(diagnosis="").values_list("diagnosis", flat=True),
                 *await PatientRecord.filter(patient_id=patient.id, kind="diagnosis").values_list("title", flat=True)]
    return PatientFacts(age=age_on(patient.birth_date, day or datetime.now(timezone.utc).date()),
                        sex=patient.sex or "unknown", history=history_names(table, diagnoses))


async def _stored_height(patient: Any) -> Any:
    from care import vitals

    return (await vitals.latest(patient)).get("body_height")


async def advise(patient: Any, observations: Iterable[Any], *, table: RuleTable | None = None) -> Advice:
    """The advice for new ``observations`` (``care.models.Observation`` rows, or objects with ``kind``, ``values``,
    ``unit``, ``measured_at``) of ``patient``, with their age, sex and visit history."""
    table = table or current_table()
    observations = list(observations)
    height = None
    if any(getattr(o, "kind", "") == "body_weight" for o in observations) and \
            not any(getattr(o, "kind", "") == "body_height" for o in observations):
        height = await _stored_height(patient)
    found = readings(observations, height=height)
    days = [r.measured_at.date() for r in found if r.measured_at]
    facts = await patient_facts(table, patient, max(days) if days else None)
    items = [item for r in found if (item := evaluate(table, r, facts)) is not None]
    return combine(table, items)


LATEST_WITHIN = timedelta(days=90)  # older readings no longer speak for the patient's state


async def latest_advice(patient: Any, *, table: RuleTable | None = None, now: datetime | None = None) -> Advice:
    """The advice on the patient's latest reading of each kind taken in the last 90 days (what the mini program
    and the kiosk's doctor list start from)."""
    from care import vitals

    since = (now or datetime.now(timezone.utc)) - LATEST_WITHIN
    recent = [o for o in (await vitals.latest(patient)).values() if o.measured_at >= since]
    return await advise(patient, recent, table=table)


def _main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT_RULES
    try:
        table = load_table(path)
    except RulesError as exc:
        print(f"规则文件有误：{exc}", file=sys.stderr)
        return 1
    by_kind: dict[str, int] = {}
    for rule in table.rules:
        for kind in rule.kinds:
            by_kind[kind] = by_kind.get(kind, 0) + 1
    print(f"规则文件可用：{path}，共 {len(table.rules)} 条规则（" +
          "，".join(f"{k} {n}" for k, n in by_kind.items()) + "）")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
