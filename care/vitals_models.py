"""Vital signs measured at kiosks (or typed in the mini program, or from the HIS), and the hospital systems allowed
to read them over FHIR.

Values are stored in one unit per kind (``care.vital_kinds``): a reading sent in lb or °F is converted on the way in,
so charts, advice and FHIR answers never convert again.
"""

from tortoise import fields
from tortoise.models import Model


class Observation(Model):
    id = fields.IntField(primary_key=True)
    patient = fields.ForeignKeyField("models.Patient", related_name="observations", on_delete=fields.CASCADE)
    kind = fields.CharField(max_length=24)  # blood_pressure | heart_rate | ... (care.vital_kinds.KINDS)
    code = fields.CharField(max_length=32)  # LOINC code of the kind (as stored, not as sent)
    # In the stored unit, e.g. {"systolic": 128, "diastolic": 82}, {"value": 36.8}, {"value": 6.1, "context":
    # "fasting"}, {"heart_rate": 72, "rhythm": "normal"} for an ECG summary.
    values = fields.JSONField(default=dict)
    unit = fields.CharField(max_length=16, default="")  # UCUM code of the stored unit; empty for ECG / audio
    measured_at = fields.DatetimeField()
    source = fields.CharField(max_length=64, default="")  # kiosk:<id> | mp:<user id> | his
    # ECG waveform or stethoscope audio; the row stays if the file is removed.
    attachment = fields.ForeignKeyField("models.MediaFile", related_name="observations", null=True,
                                        on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "observation"
        ordering = ["-measured_at", "-id"]
        indexes = (("patient_id", "kind", "measured_at"),)  # the column: migrations index columns


class ApiClient(Model):
    """A hospital system reading vitals over ``/fhir``. Only the token's SHA-256 is stored (shown once at creation)."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64, unique=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    token_hint = fields.CharField(max_length=12, default="")
    active = fields.BooleanField(default=True)
    last_used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "api_client"
