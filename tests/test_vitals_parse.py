"""Reading vital signs as kiosks send them: the HL7 FHIR R4 spec's own Observation examples (read in place from
../shared/conformance/fhir/), the simple JSON form, unit conversion into the stored unit, and every refusal naming
its field."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from care import vitals
from core.errors import AppError
from tests.conftest import need_conformance


def example(name: str) -> dict:
    return json.loads(need_conformance("fhir", f"observation-example-{name}.json").read_text())


async def one(payload) -> vitals.Reading:
    readings = await vitals.parse(payload)
    assert len(readings) == 1
    return readings[0]


async def refusal(payload, **kwargs) -> tuple[int, str, str]:
    with pytest.raises(AppError) as caught:
        await vitals.parse(payload, **kwargs)
    exc = caught.value
    return exc.status, exc.code, (exc.details or {}).get("field")


# -- the spec's examples ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kind, values, when", [
    ("bloodpressure", "blood_pressure", {"systolic": 107, "diastolic": 60}, "2012-09-16T16:00:00+00:00"),
    ("heart-rate", "heart_rate", {"value": 44}, "1999-07-01T16:00:00+00:00"),
    ("body-temperature", "body_temperature", {"value": 36.5}, "1999-07-01T16:00:00+00:00"),
    ("respiratory-rate", "respiratory_rate", {"value": 26}, "1999-07-01T16:00:00+00:00"),
    ("satO2", "spo2", {"value": 95}, "2014-12-05T08:30:10+00:00"),
    # 185 lbs → kg; the example has no time, only a date: midnight in the hospital's zone (Asia/Shanghai)
    ("", "body_weight", {"value": 83.9}, "2016-03-27T16:00:00+00:00"),
    ("body-height", "body_height", {"value": 169.9}, "1999-07-01T16:00:00+00:00"),  # 66.9 [in_i] → cm
    ("f001-glucose", "blood_glucose", {"value": 6.3}, "2013-04-02T08:30:10+00:00"),  # effectivePeriod.start
])
async def test_spec_examples_are_read_in_the_stored_unit(name, kind, values, when):
    data = example(name) if name else json.loads(need_conformance("fhir", "observation-example.json").read_text())
    reading = await one(data)
    assert reading.kind.name == kind
    assert reading.values == values
    assert reading.measured_at == datetime.fromisoformat(when)
    assert reading.subject == data["subject"]["reference"]


async def test_a_cancelled_observation_is_refused_by_its_status():
    assert await refusal(example("bloodpressure-cancel")) == (422, "bad_status", "status")


async def test_bmi_is_not_a_code_we_take():
    # BMI is derived from weight and height: a kiosk sends those.
    assert await refusal(example("bmi")) == (422, "unknown_code", "code.coding")


async def test_a_bundle_reads_every_entry_and_skips_the_panel():
    names = ["vitals-panel", "bloodpressure", "heart-rate", "body-temperature", "respiratory-rate"]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": example(n)} for n in names]}
    readings = await vitals.parse(bundle)
    assert [r.kind.name for r in readings] == ["blood_pressure", "heart_rate", "body_temperature", "respiratory_rate"]
    assert [r.field for r in readings] == [f"entry[{i}].resource" for i in range(1, 5)]
    assert await refusal(example("vitals-panel")) == (422, "no_observations", "entry")


async def test_an_error_in_one_bundle_entry_names_that_entry():
    bp = example("bloodpressure")
    del bp["component"][1]["valueQuantity"]["unit"]
    bp["component"][1]["valueQuantity"].pop("code")
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": example("heart-rate")}, {"resource": bp}]}
    assert await refusal(bundle) == (422, "missing_unit", "entry[1].resource.component[1].valueQuantity.unit")


async def test_fhir_structure_is_checked_against_r4():
    hr = example("heart-rate")
    hr["valueQuantity"]["value"] = "44 bpm"
    assert (await refusal(hr))[:2] == (422, "invalid_value")
    hr = example("heart-rate")
    hr["code"] = "8867-4"  # a CodeableConcept, not a string
    assert (await refusal(hr))[:2] == (422, "unknown_code")
    hr = example("heart-rate")
    hr["category"] = {"text": "not a list"}
    assert await refusal(hr) == (422, "invalid_fhir", "category")


# -- conversions -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("item, values", [
    ({"type": "body_temperature", "value": 98.6, "unit": "°F"}, {"value": 37.0}),
    ({"type": "body_temperature", "value": 37.2, "unit": "℃"}, {"value": 37.2}),
    ({"type": "body_weight", "value": 150, "unit": "lb"}, {"value": 68.0}),
    ({"type": "body_weight", "value": 130, "unit": "斤"}, {"value": 65.0}),
    ({"type": "blood_glucose", "value": 126, "unit": "mg/dL", "context": "fasting"},
     {"value": 7.0, "context": "fasting"}),
    ({"type": "blood_glucose", "value": 5.6, "unit": "mmol/L"}, {"value": 5.6}),
    ({"type": "blood_pressure", "systolic": 16, "diastolic": 10.7, "unit": "kPa"}, {"systolic": 120, "diastolic": 80}),
    ({"type": "body_height", "value": 1.72, "unit": "m"}, {"value": 172.0}),
    ({"type": "spo2", "value": 98, "unit": "%"}, {"value": 98}),
    ({"type": "heart_rate", "value": 72, "unit": "bpm"}, {"value": 72}),
    ({"type": "ecg", "heart_rate": 72, "rhythm": "normal"}, {"heart_rate": 72, "rhythm": "normal"}),
])
async def test_simple_form_is_converted_to_the_stored_unit(item, values):
    reading = await one(item)
    assert reading.values == values
    assert reading.kind.name == item["type"]


async def test_fhir_glucose_in_mg_dl_with_a_fasting_code():
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "1558-6"}]},
           "effectiveDateTime": "2026-03-02T07:10:00+08:00",
           "valueQuantity": {"value": 99, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
    reading = await one(obs)
    assert reading.values == {"value": 5.5, "context": "fasting"}
    assert reading.measured_at == datetime(2026, 3, 1, 23, 10, tzinfo=timezone.utc)


# -- bad input ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("item, expected", [
    ({"type": "blood_pressure", "systolic": 128, "diastolic": 82}, ("missing_unit", "unit")),
    ({"type": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "psi"}, ("unit_not_supported", "unit")),
    ({"type": "blood_pressure", "systolic": 400, "diastolic": 82, "unit": "mmHg"}, ("impossible_value", "systolic")),
    ({"type": "blood_pressure", "systolic": 80, "diastolic": 120, "unit": "mmHg"}, ("impossible_value", "diastolic")),
    ({"type": "blood_pressure", "systolic": 128, "unit": "mmHg"}, ("missing_value", "diastolic")),
    ({"type": "body_temperature", "value": 98.6, "unit": "Cel"}, ("impossible_value", "value")),  # °F sent as °C
    ({"type": "spo2", "value": 101, "unit": "%"}, ("impossible_value", "value")),
    ({"type": "heart_rate", "value": "fast", "unit": "/min"}, ("invalid_value", "value")),
    ({"type": "heart_rate", "value": True, "unit": "/min"}, ("invalid_value", "value")),
    ({"type": "blood_glucose", "value": 5.2, "unit": "mmol/L", "context": "after lunch"}, ("invalid_value", "context")),
    ({"type": "mood", "value": 5, "unit": "/10"}, ("unknown_type", "type")),
    ({"type": "heart_rate", "value": 70, "unit": "/min", "measured_at": "yesterday"}, ("invalid_date", "measured_at")),
    ({"type": "ecg"}, ("missing_value", "heart_rate")),
    ({"type": "stethoscope", "site": "heart"}, ("missing_file", "file")),
])
async def test_bad_simple_readings_are_refused_naming_the_field(item, expected):
    assert await refusal(item) == (422, *expected)


async def test_a_future_time_is_refused_and_a_little_clock_skew_is_not():
    now = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
    late = {"type": "heart_rate", "value": 70, "unit": "/min", "measured_at": (now + timedelta(hours=1)).isoformat()}
    assert await refusal(late, now=now) == (422, "future_date", "measured_at")
    skew = dict(late, measured_at=(now + timedelta(minutes=2)).isoformat())
    assert (await vitals.parse(skew, now=now))[0].measured_at == now + timedelta(minutes=2)
    hr = example("heart-rate")
    hr["effectiveDateTime"] = "2099-01-01"
    assert await refusal(hr) == (422, "future_date", "effectiveDateTime")


async def test_one_bad_reading_in_a_list_refuses_all_and_names_its_index():
    items = [{"type": "heart_rate", "value": 70, "unit": "/min"},
             {"type": "body_weight", "value": 70, "unit": "stone"}]
    assert await refusal({"observations": items}) == (422, "unit_not_supported", "observations[1].unit")
    assert await refusal(items) == (422, "unit_not_supported", "[1].unit")


async def test_shapes_that_are_not_readings():
    assert await refusal("text") == (400, "invalid_body", "body")
    assert await refusal([]) == (422, "no_observations", "body")
    assert await refusal({"resourceType": "Patient", "id": "x"}) == (422, "invalid_resource", "resourceType")
    assert await refusal([1]) == (400, "invalid_body", "[0]")
    assert await refusal({"resourceType": "Bundle", "type": "collection"}) == (422, "no_observations", "entry")
