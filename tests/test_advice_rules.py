"""The shipped advice rule table at every boundary, the checks a rule file passes when it is loaded, and an
administrator's edit taking effect (or, broken, being refused while the last good table stays in use)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from care import advice
from care.advice import DEFAULT_RULES, PatientFacts, Reading, RulesError, evaluate, load_table

TABLE = load_table(DEFAULT_RULES)
ADULT = PatientFacts(age=40, sex="male")
DIABETES = PatientFacts(age=40, sex="male", history=frozenset({"diabetes"}))
COPD = PatientFacts(age=70, sex="male", history=frozenset({"copd"}))


def bp(s, d):
    return {"systolic": s, "diastolic": d}


def v(x):
    return {"value": x}


# (kind, values, fasting, facts, expected rule id, expected grade)
BOUNDARIES = [
    # blood pressure (mmHg): Chinese hypertension guideline 2018 classes
    ("blood_pressure", bp(119, 79), False, ADULT, "bp.normal", "normal"),
    ("blood_pressure", bp(120, 79), False, ADULT, "bp.high_normal", "watch"),
    ("blood_pressure", bp(119, 80), False, ADULT, "bp.high_normal", "watch"),
    ("blood_pressure", bp(139, 89), False, ADULT, "bp.high_normal", "watch"),
    ("blood_pressure", bp(140, 70), False, ADULT, "bp.grade1", "see_doctor"),
    ("blood_pressure", bp(130, 90), False, ADULT, "bp.grade1", "see_doctor"),
    ("blood_pressure", bp(159, 99), False, ADULT, "bp.grade1", "see_doctor"),
    ("blood_pressure", bp(160, 80), False, ADULT, "bp.grade2", "see_doctor"),
    ("blood_pressure", bp(150, 100), False, ADULT, "bp.grade2", "see_doctor"),
    ("blood_pressure", bp(179, 109), False, ADULT, "bp.grade2", "see_doctor"),
    ("blood_pressure", bp(180, 100), False, ADULT, "bp.very_high", "urgent"),
    ("blood_pressure", bp(170, 110), False, ADULT, "bp.very_high", "urgent"),
    ("blood_pressure", bp(185, 55), False, ADULT, "bp.very_high", "urgent"),  # very high wins over low
    ("blood_pressure", bp(90, 60), False, ADULT, "bp.normal", "normal"),
    ("blood_pressure", bp(89, 65), False, ADULT, "bp.low", "watch"),
    ("blood_pressure", bp(100, 59), False, ADULT, "bp.low", "watch"),
    # age: children are not graded by adult thresholds; unknown age is graded as an adult
    ("blood_pressure", bp(150, 95), False, PatientFacts(age=17), "bp.child", "watch"),
    ("blood_pressure", bp(119, 79), False, PatientFacts(age=18), "bp.normal", "normal"),
    ("blood_pressure", bp(125, 80), False, PatientFacts(), "bp.high_normal", "watch"),
    # age and sex together: the guideline's risk factor (men over 55, women over 65)
    ("blood_pressure", bp(125, 75), False, PatientFacts(age=55, sex="male"), "bp.high_normal", "watch"),
    ("blood_pressure", bp(125, 75), False, PatientFacts(age=56, sex="male"), "bp.high_normal_with_age", "watch"),
    ("blood_pressure", bp(125, 75), False, PatientFacts(age=65, sex="female"), "bp.high_normal", "watch"),
    ("blood_pressure", bp(125, 75), False, PatientFacts(age=66, sex="female"), "bp.high_normal_with_age", "watch"),
    ("blood_pressure", bp(119, 79), False, PatientFacts(age=70, sex="female"), "bp.normal", "normal"),
    # history: with diabetes the target is below 130/80
    ("blood_pressure", bp(129, 79), False, DIABETES, "bp.high_normal", "watch"),
    ("blood_pressure", bp(130, 70), False, DIABETES, "bp.diabetes_target", "see_doctor"),
    ("blood_pressure", bp(125, 80), False, DIABETES, "bp.diabetes_target", "see_doctor"),
    ("blood_pressure", bp(130, 70), False, ADULT, "bp.high_normal", "watch"),
    # heart rate (/min)
    ("heart_rate", v(40), False, ADULT, "hr.very_low", "urgent"),
    ("heart_rate", v(41), False, ADULT, "hr.low", "see_doctor"),
    ("heart_rate", v(49), False, ADULT, "hr.low", "see_doctor"),
    ("heart_rate", v(50), False, ADULT, "hr.normal", "normal"),
    ("heart_rate", v(100), False, ADULT, "hr.normal", "normal"),
    ("heart_rate", v(101), False, ADULT, "hr.raised", "watch"),
    ("heart_rate", v(110), False, ADULT, "hr.raised", "watch"),
    ("heart_rate", v(111), False, ADULT, "hr.high", "see_doctor"),
    ("heart_rate", v(130), False, ADULT, "hr.high", "see_doctor"),
    ("heart_rate", v(131), False, ADULT, "hr.very_high", "urgent"),
    ("heart_rate", v(110), False, PatientFacts(age=6), "hr.child", "watch"),
    ("heart_rate", v(72), False, PatientFacts(age=18), "hr.normal", "normal"),
    # body temperature (°C)
    ("body_temperature", v(35.0), False, ADULT, "temp.very_low", "urgent"),
    ("body_temperature", v(35.1), False, ADULT, "temp.low", "watch"),
    ("body_temperature", v(35.9), False, ADULT, "temp.low", "watch"),
    ("body_temperature", v(36.0), False, ADULT, "temp.normal", "normal"),
    ("body_temperature", v(37.2), False, ADULT, "temp.normal", "normal"),
    ("body_temperature", v(37.3), False, ADULT, "temp.low_fever", "watch"),
    ("body_temperature", v(38.0), False, ADULT, "temp.low_fever", "watch"),
    ("body_temperature", v(38.1), False, ADULT, "temp.moderate", "see_doctor"),
    ("body_temperature", v(39.0), False, ADULT, "temp.moderate", "see_doctor"),
    ("body_temperature", v(39.1), False, ADULT, "temp.high", "see_doctor"),
    ("body_temperature", v(41.0), False, ADULT, "temp.high", "see_doctor"),
    ("body_temperature", v(41.1), False, ADULT, "temp.very_high", "urgent"),
    # SpO2 (%): NEWS2 scale 1; with COPD in the history, scale 2 (target 88–92 %)
    ("spo2", v(91), False, ADULT, "spo2.very_low", "urgent"),
    ("spo2", v(92), False, ADULT, "spo2.low", "see_doctor"),
    ("spo2", v(93), False, ADULT, "spo2.low", "see_doctor"),
    ("spo2", v(94), False, ADULT, "spo2.slightly_low", "watch"),
    ("spo2", v(95), False, ADULT, "spo2.slightly_low", "watch"),
    ("spo2", v(96), False, ADULT, "spo2.normal", "normal"),
    ("spo2", v(83), False, COPD, "spo2.copd.very_low", "urgent"),
    ("spo2", v(84), False, COPD, "spo2.copd.low", "see_doctor"),
    ("spo2", v(87), False, COPD, "spo2.copd.low", "see_doctor"),
    ("spo2", v(88), False, COPD, "spo2.copd.in_range", "normal"),
    # respiratory rate (/min): NEWS2
    ("respiratory_rate", v(8), False, ADULT, "rr.very_low", "urgent"),
    ("respiratory_rate", v(9), False, ADULT, "rr.low", "watch"),
    ("respiratory_rate", v(11), False, ADULT, "rr.low", "watch"),
    ("respiratory_rate", v(12), False, ADULT, "rr.normal", "normal"),
    ("respiratory_rate", v(20), False, ADULT, "rr.normal", "normal"),
    ("respiratory_rate", v(21), False, ADULT, "rr.high", "see_doctor"),
    ("respiratory_rate", v(24), False, ADULT, "rr.high", "see_doctor"),
    ("respiratory_rate", v(25), False, ADULT, "rr.very_high", "urgent"),
    ("respiratory_rate", v(30), False, PatientFacts(age=3), "rr.child", "watch"),
    ("respiratory_rate", v(16), False, PatientFacts(age=18), "rr.normal", "normal"),
    # blood glucose (mmol/L): ADA hypoglycaemia levels, WHO 2006 fasting / random cut-offs, 16.7 crisis
    ("blood_glucose", v(2.9), True, ADULT, "glu.very_low", "urgent"),
    ("blood_glucose", v(3.0), True, ADULT, "glu.low", "see_doctor"),
    ("blood_glucose", v(3.8), True, ADULT, "glu.low", "see_doctor"),
    ("blood_glucose", v(3.9), True, ADULT, "glu.fasting.normal", "normal"),
    ("blood_glucose", v(6.0), True, ADULT, "glu.fasting.normal", "normal"),
    ("blood_glucose", v(6.1), True, ADULT, "glu.fasting.raised", "watch"),
    ("blood_glucose", v(6.9), True, ADULT, "glu.fasting.raised", "watch"),
    ("blood_glucose", v(7.0), True, ADULT, "glu.fasting.high", "see_doctor"),
    ("blood_glucose", v(16.6), True, ADULT, "glu.fasting.high", "see_doctor"),
    ("blood_glucose", v(16.7), True, ADULT, "glu.very_high", "urgent"),
    ("blood_glucose", v(3.9), False, ADULT, "glu.random.normal", "normal"),
    ("blood_glucose", v(7.0), False, ADULT, "glu.random.normal", "normal"),
    ("blood_glucose", v(7.7), False, ADULT, "glu.random.normal", "normal"),
    ("blood_glucose", v(7.8), False, ADULT, "glu.random.raised", "watch"),
    ("blood_glucose", v(11.0), False, ADULT, "glu.random.raised", "watch"),
    ("blood_glucose", v(11.1), False, ADULT, "glu.random.high", "see_doctor"),
    ("blood_glucose", v(16.7), False, ADULT, "glu.very_high", "urgent"),
    # BMI (kg/m²): WS/T 428-2013 classes for Chinese adults
    ("bmi", v(18.4), False, ADULT, "bmi.under", "watch"),
    ("bmi", v(18.5), False, ADULT, "bmi.normal", "normal"),
    ("bmi", v(23.9), False, ADULT, "bmi.normal", "normal"),
    ("bmi", v(24.0), False, ADULT, "bmi.overweight", "watch"),
    ("bmi", v(27.9), False, ADULT, "bmi.overweight", "watch"),
    ("bmi", v(28.0), False, ADULT, "bmi.obese", "see_doctor"),
    ("bmi", v(30.0), False, PatientFacts(age=12), "bmi.child", "watch"),
    ("bmi", v(30.0), False, PatientFacts(age=18), "bmi.obese", "see_doctor"),
]


@pytest.mark.parametrize("kind,values,fasting,facts,rule,grade", BOUNDARIES,
                         ids=[f"{c[0]}-{'/'.join(str(x) for x in c[1].values())}-{c[4]}" for c in BOUNDARIES])
def test_every_boundary_of_the_shipped_rules(kind, values, fasting, facts, rule, grade):
    item = evaluate(TABLE, Reading(kind, values, fasting=fasting), facts)
    assert (item["rule"], item["grade"]) == (rule, grade)
    assert item["source"] and item["text"]
    shown = "/".join(advice._shown(x) for x in values.values())
    assert shown in item["text"]  # the reading is quoted back to the patient


def _bounds(cond, out):
    for key, test in cond.items():
        if key in ("all", "any"):
            for sub in test:
                _bounds(sub, out)
        elif key == "not":
            _bounds(test, out)
        elif isinstance(test, dict):
            out.update((key, bound) for bound in test.values())
    return out


def test_the_boundary_table_covers_every_threshold_of_the_shipped_file():
    """A threshold added to the shipped rules without a test at it fails here."""
    tested = {(c[0], f, x) for c in BOUNDARIES for f, x in c[1].items()} | \
             {(c[0], "age", c[3].age) for c in BOUNDARIES if c[3].age is not None}
    missing = []
    for rule in TABLE.rules:
        for field_, bound in _bounds(rule.when or {}, set()):
            if not any((kind, field_, bound) in tested for kind in rule.kinds):
                missing.append((rule.id, field_, bound))
    assert missing == []


def test_every_rule_cites_its_guideline_and_neither_diagnoses_nor_prescribes():
    raw = json.loads(DEFAULT_RULES.read_text(encoding="utf-8"))
    for rule in raw["rules"]:
        assert rule["source"] in raw["sources"]
        for word in ("确诊", "诊断为", "患有", "服用", "毫克", "药"):
            assert word not in rule["text"], (rule["id"], word)
    for kind in advice.KINDS:  # each kind ends with a rule that always answers
        assert any(kind in r.kinds and r.when is None for r in TABLE.rules), kind


def test_combined_advice_orders_departments_by_urgency():
    items = [evaluate(TABLE, Reading("blood_pressure", bp(150, 92)), ADULT),
             evaluate(TABLE, Reading("body_temperature", v(36.5)), ADULT),
             evaluate(TABLE, Reading("blood_glucose", v(2.5), fasting=True), ADULT)]
    result = advice.combine(TABLE, items)
    assert result.grade == "urgent" and result.grade_name == "请立即就医"
    assert [i["kind"] for i in result.items] == ["blood_glucose", "blood_pressure", "body_temperature"]
    assert result.departments == ["急诊科", "内分泌科", "心血管内科", "全科医学科"]
    assert "糖尿病" in result.specialties and "高血压" in result.specialties
    assert result.summary == TABLE.summaries["urgent"] and result.disclaimer
    assert advice.combine(TABLE, []).grade == "normal"


class Obs:
    def __init__(self, kind, values, unit="", id=None):
        self.kind, self.values, self.unit, self.id, self.measured_at = kind, values, unit, id, None


def test_bmi_from_weight_and_height_and_the_glucose_context():
    found = advice.readings([Obs("body_weight", {"value": 70}, "kg"), Obs("body_height", {"value": 170}, "cm"),
                             Obs("blood_glucose", {"value": 6.5, "context": "fasting"}, "mmol/L"),
                             Obs("ecg", {"heart_rate": 70, "rhythm": "normal"})])
    assert [(r.kind, r.values.get("value"), r.fasting) for r in found] == \
        [("blood_glucose", 6.5, True), ("bmi", 24.2, False)]
    # A weight alone gives no BMI; a stored height (in metres here) is used when given
    assert [r.kind for r in advice.readings([Obs("body_weight", {"value": 70}, "kg")])] == []
    assert advice.readings([Obs("body_weight", {"value": 81}, "kg")],
                           height=Obs("body_height", {"value": 1.8}, "m"))[0].values == {"value": 25.0}


# -- a rule file an administrator edits ----------------------------------------------------------------------------
def _doc() -> dict:
    return json.loads(DEFAULT_RULES.read_text(encoding="utf-8"))


def _rule(doc, rid):
    return next(r for r in doc["rules"] if r["id"] == rid)


@pytest.mark.parametrize("change,where,why", [
    (lambda d: _rule(d, "bp.grade1")["when"]["any"][0]["systolic"].update({"gtee": 1}),
     "rule 'bp.grade1'.when.any[0].systolic.gtee", "unknown operator"),
    (lambda d: _rule(d, "bp.grade1")["when"]["any"][0]["systolic"].update({"gte": "140"}),
     "rule 'bp.grade1'.when.any[0].systolic.gte", "must be a number"),
    (lambda d: _rule(d, "hr.low").update(source="nowhere"), "rule 'hr.low'.source", "every rule cites"),
    (lambda d: _rule(d, "hr.low").pop("source"), "rule 'hr.low'.source", "every rule cites"),
    (lambda d: _rule(d, "hr.low").update(grade="bad"), "rule 'hr.low'.grade", "must be one of"),
    (lambda d: _rule(d, "hr.low").update(kind="pulse"), "rule 'hr.low'.kind", "must be one of"),
    (lambda d: _rule(d, "hr.low").update(when={"systolic": {"lt": 50}}), "rule 'hr.low'.when.systolic",
     "unknown field"),
    (lambda d: _rule(d, "hr.low").update(text="您患有心动过缓"), "rule 'hr.low'.text", "must not diagnose"),
    (lambda d: _rule(d, "hr.low").update(text="请每天服用一片"), "rule 'hr.low'.text", "must not diagnose"),
    (lambda d: _rule(d, "hr.low").update(text="心率 {value}"), "rule 'hr.low'.text", "unknown placeholder"),
    (lambda d: _rule(d, "hr.low").update(when={"history": "gout"}), "rule 'hr.low'.when.history",
     "unknown history"),
    (lambda d: _rule(d, "hr.low").update(departments=["神经科"]), "rule 'hr.low'.departments",
     "unknown department"),
    (lambda d: _rule(d, "hr.low").update(id="hr.normal"), "rule 'hr.normal'", "used twice"),
    (lambda d: _rule(d, "hr.low").update(when={"sex": "man"}), "rule 'hr.low'.when.sex", "must be one of"),
    (lambda d: d["summaries"].pop("urgent"), "summaries.urgent", "non-empty text"),
])
def test_a_broken_rule_file_is_refused_naming_rule_and_field(tmp_path, change, where, why):
    doc = _doc()
    change(doc)
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(RulesError) as refused:
        advice.configure(path)
    assert where in str(refused.value) and why in str(refused.value)
    advice.configure(None)


def test_the_check_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ADVICE_RULES"}
    root = Path(__file__).resolve().parents[1]
    ok = subprocess.run([sys.executable, "-m", "care.advice"], cwd=root, env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "规则文件可用" in ok.stdout
    bad = tmp_path / "rules.json"
    bad.write_text("{ not json", encoding="utf-8")
    refused = subprocess.run([sys.executable, "-m", "care.advice", str(bad)], cwd=root, env=env,
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "not valid JSON" in refused.stderr


def test_an_edit_takes_effect_and_a_broken_edit_keeps_the_last_good_table(tmp_path, caplog):
    path = tmp_path / "rules.json"
    doc = _doc()
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    advice.configure(path)
    try:
        reading = Reading("heart_rate", v(105))
        assert evaluate(advice.current_table(), reading, ADULT)["rule"] == "hr.raised"
        _rule(doc, "hr.raised")["when"] = {"value": {"gt": 106}}  # the hospital moves the threshold
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        os.utime(path, ns=(1, 10**18))
        assert evaluate(advice.current_table(), reading, ADULT)["rule"] == "hr.normal"
        path.write_text("{ broken", encoding="utf-8")
        os.utime(path, ns=(1, 2 * 10**18))
        assert evaluate(advice.current_table(), reading, ADULT)["rule"] == "hr.normal"  # last good table
        assert "not reloaded" in caplog.text
    finally:
        advice.configure(None)
