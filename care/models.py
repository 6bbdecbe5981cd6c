"""Patients, the practitioners who see them, their visits and records.

ID-card numbers are never stored in clear: only a masked form for display and an HMAC (keyed with SECRET_KEY) for
lookup. Rows imported from the hospital information system carry its id (``his_id``) so a re-import updates them.
"""

from tortoise import fields
from tortoise.models import Model

SEXES = ("male", "female", "other", "unknown")


class Patient(Model):
    id = fields.IntField(primary_key=True)
    number = fields.CharField(max_length=16, unique=True)  # ours: P + 8 digits, allocated by care.patients
    his_id = fields.CharField(max_length=64, unique=True, null=True)
    name = fields.CharField(max_length=64, default="")
    sex = fields.CharField(max_length=8, default="unknown")  # male | female | other | unknown
    birth_date = fields.DateField(null=True)
    id_card_masked = fields.CharField(max_length=32, default="")  # e.g. 1101**********1234
    id_card_hash = fields.CharField(max_length=64, null=True, db_index=True)  # HMAC-SHA256 hex of the normalised number
    phone = fields.CharField(max_length=32, default="")
    # SHA-256 of the last HIS photo enrolled: a re-import with the same photo does not enrol it again.
    his_photo_hash = fields.CharField(max_length=64, default="")
    hospital = fields.ForeignKeyField("models.Hospital", related_name="patients", null=True,
                                      on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "patient"

    def __str__(self) -> str:
        return self.number


class PatientCounter(Model):
    """The last patient number given; incremented atomically in the database."""

    name = fields.CharField(max_length=16, primary_key=True)
    value = fields.IntField(default=0)

    class Meta:
        table = "patient_counter"


class Practitioner(Model):
    id = fields.IntField(primary_key=True)
    his_id = fields.CharField(max_length=64, unique=True, null=True)
    name = fields.CharField(max_length=64, default="")
    department = fields.CharField(max_length=64, default="")
    specialties = fields.JSONField(default=list)  # list of strings
    active = fields.BooleanField(default=True)
    hospital = fields.ForeignKeyField("models.Hospital", related_name="practitioners", null=True,
                                      on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "practitioner"


class Visit(Model):
    """One encounter of a patient with the hospital (FHIR ``Encounter``)."""

    id = fields.IntField(primary_key=True)
    his_id = fields.CharField(max_length=64, unique=True, null=True)
    patient = fields.ForeignKeyField("models.Patient", related_name="visits", on_delete=fields.CASCADE)
    hospital_name = fields.CharField(max_length=128, default="")
    department = fields.CharField(max_length=64, default="")
    practitioner = fields.ForeignKeyField("models.Practitioner", related_name="visits", null=True,
                                          on_delete=fields.SET_NULL)
    # The doctor's name as the source gave it, kept when no practitioner row matches.
    doctor_name = fields.CharField(max_length=64, default="")
    kind = fields.CharField(max_length=32, default="")  # outpatient | inpatient | emergency | ... (FHIR class)
    status = fields.CharField(max_length=16, default="")
    diagnosis = fields.TextField(default="")
    medication = fields.TextField(default="")
    start_at = fields.DatetimeField(null=True)
    end_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "visit"
        ordering = ["-start_at", "-id"]


class PatientRecord(Model):
    """Anything else kept about a patient: vitals taken at a kiosk, a report, a note."""

    id = fields.IntField(primary_key=True)
    his_id = fields.CharField(max_length=64, unique=True, null=True)
    patient = fields.ForeignKeyField("models.Patient", related_name="records", on_delete=fields.CASCADE)
    kind = fields.CharField(max_length=32)  # vitals | report | note | ...
    title = fields.CharField(max_length=128, default="")
    data = fields.JSONField(default=dict)
    source = fields.CharField(max_length=16, default="")  # kiosk | his | import | staff
    recorded_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "patient_record"
        ordering = ["-recorded_at", "-id"]
