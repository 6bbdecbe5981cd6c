"""The kinds of vital sign we take: their LOINC codes, the one unit each is stored in, the units accepted on the way
in (with the conversion), and the range outside which a value is physiologically impossible (a device or typing
error, refused rather than stored).

Ranges are deliberately wide: they catch a temperature sent in °F as °C or a diastolic above the systolic, not an
unusual patient. Grading values (normal / watch / …) is ``care.advice``'s job, not this table's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
# Our own code system, for what LOINC has no plain code for (a heart or lung sound recording).
MEDWX_KIND = "https://medwx.cn/fhir/CodeSystem/vital-kind"
GLUCOSE_CONTEXT_URL = "https://medwx.cn/fhir/StructureDefinition/glucose-context"
ATTACHMENT_URL = "https://medwx.cn/fhir/StructureDefinition/observation-attachment"
VITAL_SIGNS_CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": "vital-signs", "display": "Vital Signs"}], "text": "Vital Signs"}

Convert = Callable[[float], float]


def _same(v: float) -> float:
    return v


def _times(k: float) -> Convert:
    return lambda v: v * k


def _fahrenheit(v: float) -> float:
    return (v - 32) * 5 / 9


MG_DL_PER_MMOL_L = 18.016  # glucose, molar mass 180.16 g/mol


@dataclass(frozen=True)
class Part:
    """One number of a reading (``value``, or ``systolic`` / ``diastolic``)."""

    name: str
    code: str  # LOINC of this part (a component's code), or the kind's own code for single-valued kinds
    display: str
    label: str  # Chinese, for messages
    low: float  # plausible range, in the stored unit
    high: float
    digits: int  # decimals kept after conversion


@dataclass(frozen=True)
class Kind:
    name: str
    code: str  # the LOINC code we store and answer with
    display: str
    label: str  # Chinese
    unit: str  # UCUM code of the stored unit ('' for files)
    unit_display: str
    parts: tuple[Part, ...] = ()
    codes: frozenset = frozenset()  # every LOINC code read as this kind (the stored one included)
    units: dict = field(default_factory=dict)  # normalised unit spelling → conversion to the stored unit
    system: str = LOINC


def _units(mapping: dict[tuple[str, ...], Convert]) -> dict[str, Convert]:
    return {spelling: fn for spellings, fn in mapping.items() for spelling in spellings}


_PER_MIN = _units({("/min", "1/min", "{beats}/min", "{beat}/min", "beats/minute", "beats/min", "bpm", "次/分",
                    "次/分钟", "{breaths}/min", "{breath}/min", "breaths/minute", "breaths/min", "/分"): _same})

BLOOD_PRESSURE = Kind(
    "blood_pressure", "85354-9", "Blood pressure panel with all children optional", "血压", "mm[Hg]", "mmHg",
    parts=(Part("systolic", "8480-6", "Systolic blood pressure", "收缩压", 40, 300, 0),
           Part("diastolic", "8462-4", "Diastolic blood pressure", "舒张压", 20, 200, 0)),
    codes=frozenset({"85354-9", "55284-4"}),  # 55284-4: the older "Blood pressure systolic and diastolic"
    units=_units({("mm[hg]", "mmhg", "mm hg", "毫米汞柱"): _same, ("kpa", "千帕"): _times(7.50062)}))
HEART_RATE = Kind(
    "heart_rate", "8867-4", "Heart rate", "心率", "/min", "beats/minute",
    parts=(Part("value", "8867-4", "Heart rate", "心率", 20, 300, 0),), codes=frozenset({"8867-4"}), units=_PER_MIN)
BODY_TEMPERATURE = Kind(
    "body_temperature", "8310-5", "Body temperature", "体温", "Cel", "°C",
    parts=(Part("value", "8310-5", "Body temperature", "体温", 30, 45, 1),),
    codes=frozenset({"8310-5", "8331-1", "8328-7", "8332-9"}),  # body, oral, axillary, rectal
    units=_units({("cel", "c", "°c", "℃", "degc", "摄氏度"): _same, ("[degf]", "f", "°f", "℉", "degf"): _fahrenheit}))
BODY_WEIGHT = Kind(
    "body_weight", "29463-7", "Body weight", "体重", "kg", "kg",
    parts=(Part("value", "29463-7", "Body weight", "体重", 0.5, 500, 1),), codes=frozenset({"29463-7", "3141-9"}),
    units=_units({("kg", "公斤", "千克"): _same, ("g", "克"): _times(0.001), ("[lb_av]", "lb", "lbs"): _times(0.45359237),
                  ("斤",): _times(0.5)}))
BODY_HEIGHT = Kind(
    "body_height", "8302-2", "Body height", "身高", "cm", "cm",
    parts=(Part("value", "8302-2", "Body height", "身高", 30, 272, 1),), codes=frozenset({"8302-2", "8306-3"}),
    units=_units({("cm", "厘米"): _same, ("m", "米"): _times(100), ("mm", "毫米"): _times(0.1),
                  ("[in_i]", "in", "inch", "inches"): _times(2.54)}))
BLOOD_GLUCOSE = Kind(
    "blood_glucose", "15074-8", "Glucose [Moles/volume] in Blood", "血糖", "mmol/L", "mmol/L",
    parts=(Part("value", "15074-8", "Glucose", "血糖", 0.5, 60, 1),),
    codes=frozenset({"15074-8", "2339-0", "2345-7", "14749-6", "41653-7", "14743-9", "1558-6", "14771-0",
                     "1521-4"}),
    units=_units({("mmol/l",): _same, ("mg/dl",): _times(1 / MG_DL_PER_MMOL_L)}))
SPO2 = Kind(
    "spo2", "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "血氧饱和度", "%", "%",
    parts=(Part("value", "59408-5", "Oxygen saturation", "血氧饱和度", 40, 100, 0),),
    codes=frozenset({"59408-5", "2708-6"}), units=_units({("%",): _same}))
RESPIRATORY_RATE = Kind(
    "respiratory_rate", "9279-1", "Respiratory rate", "呼吸频率", "/min", "breaths/minute",
    parts=(Part("value", "9279-1", "Respiratory rate", "呼吸频率", 2, 80, 0),), codes=frozenset({"9279-1"}),
    units=_PER_MIN)
ECG = Kind("ecg", "11524-6", "EKG study", "心电图", "", "", codes=frozenset({"11524-6"}))
STETHOSCOPE = Kind("stethoscope", "stethoscope", "Auscultation recording", "听诊录音", "", "",
                   codes=frozenset({"stethoscope"}), system=MEDWX_KIND)

KINDS: dict[str, Kind] = {k.name: k for k in (BLOOD_PRESSURE, HEART_RATE, BODY_TEMPERATURE, BODY_WEIGHT, BODY_HEIGHT,
                                              BLOOD_GLUCOSE, SPO2, RESPIRATORY_RATE, ECG, STETHOSCOPE)}
BY_CODE: dict[tuple[str, str], Kind] = {(k.system, c): k for k in KINDS.values() for c in k.codes}
# Codes that say the glucose was taken fasting or two hours after a meal.
GLUCOSE_CONTEXT_BY_CODE = {"1558-6": "fasting", "14771-0": "fasting", "1521-4": "postprandial"}
GLUCOSE_CONTEXTS = ("fasting", "postprandial", "random")
ECG_HEART_RATE = Part("heart_rate", "8867-4", "Heart rate", "心率", 20, 300, 0)
ECG_RHYTHM_CODE = "8884-9"  # Heart rate rhythm
VITALS_PANEL = "85353-1"  # a panel of other Observations (hasMember): no value of its own
# Media kinds (core.media) an attachment of each kind may be.
ATTACHMENT_MEDIA = {"ecg": ("waveform", "image"), "stethoscope": ("audio",)}


def normalise_unit(text: str) -> str:
    return "".join(str(text).split()).lower()
