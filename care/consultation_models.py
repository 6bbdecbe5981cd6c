"""Consultations: a patient's request to see a doctor remotely, the HIS's answer, the room and its chat.

A consultation's life: ``requested`` (sent to the HIS as a FHIR Appointment, status proposed) → ``accepted`` or
``declined`` (the HIS's answer, polled or called back) → ``active`` (both sides in the room) → ``ended`` (either side
ends it). The patient may cancel before it starts (``cancelled``). Declined and cancelled free the slot.
"""

from tortoise import fields
from tortoise.models import Model

STATUSES = ("requested", "accepted", "declined", "cancelled", "active", "ended")
OPEN_STATUSES = ("requested", "accepted", "active")
SENDERS = ("patient", "doctor")


class DoctorAccount(Model):
    """A console user (role ``doctor``) who is this practitioner: they see and answer the practitioner's
    consultations."""

    id = fields.IntField(primary_key=True)
    user = fields.OneToOneField("models.User", related_name="doctor_account", on_delete=fields.CASCADE)
    practitioner = fields.OneToOneField("models.Practitioner", related_name="account", on_delete=fields.CASCADE)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "doctor_account"


class Consultation(Model):
    id = fields.IntField(primary_key=True)
    patient = fields.ForeignKeyField("models.Patient", related_name="consultations", on_delete=fields.CASCADE)
    practitioner = fields.ForeignKeyField("models.Practitioner", related_name="consultations",
                                          on_delete=fields.RESTRICT)
    slot = fields.ForeignKeyField("models.PractitionerSlot", related_name="consultations", null=True,
                                  on_delete=fields.SET_NULL)
    status = fields.CharField(max_length=16, default="requested", db_index=True)
    source = fields.CharField(max_length=16, default="")  # kiosk | mp
    kiosk = fields.ForeignKeyField("models.Kiosk", related_name="consultations", null=True, on_delete=fields.SET_NULL)
    requested_by = fields.ForeignKeyField("models.User", related_name="consultations_requested", null=True,
                                          on_delete=fields.SET_NULL)  # the mini-program user who asked
    reason = fields.CharField(max_length=500, default="")
    his_appointment_id = fields.CharField(max_length=64, null=True, unique=True)
    answer_note = fields.CharField(max_length=500, default="")  # the HIS's comment on a decline
    # A random id naming the room: room tokens carry it, Redis channels are named after it.
    room = fields.CharField(max_length=32, unique=True)
    requested_at = fields.DatetimeField(auto_now_add=True)
    answered_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    ended_by = fields.CharField(max_length=16, default="")  # patient | doctor | system
    duration_seconds = fields.IntField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "consultation"
        ordering = ["-id"]


class ConsultationMessage(Model):
    id = fields.IntField(primary_key=True)
    consultation = fields.ForeignKeyField("models.Consultation", related_name="messages", on_delete=fields.CASCADE)
    sender = fields.CharField(max_length=8)  # patient | doctor
    kind = fields.CharField(max_length=8, default="text")
    body = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "consultation_message"
        ordering = ["id"]


NOTICE_EVENTS = ("accepted", "declined")
NOTICE_STATUSES = ("pending", "sent", "failed", "skipped")


class SubscribeCredit(Model):
    """How many subscribe messages of one template a mini-program user allows: each "accept" the mini program
    reports from ``wx.requestSubscribeMessage`` is one (WeChat's one-time subscriptions), each notice created takes
    one (a conditional UPDATE ``count > 0``, so two notices never share one)."""

    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="subscribe_credits", on_delete=fields.CASCADE)
    template_id = fields.CharField(max_length=64)
    count = fields.IntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "subscribe_credit"
        unique_together = (("user", "template_id"),)


class ConsultationNotice(Model):
    """One subscribe message owed to one mini-program user for the HIS's answer to a consultation: sent, retried
    (pending), failed (kept with the reason) or skipped (no subscription, no template). Unique per consultation, user
    and event, so an event delivered twice sends once."""

    id = fields.IntField(primary_key=True)
    consultation = fields.ForeignKeyField("models.Consultation", related_name="notices", on_delete=fields.CASCADE)
    user = fields.ForeignKeyField("models.User", related_name="consultation_notices", on_delete=fields.CASCADE)
    openid = fields.CharField(max_length=64)  # the user's mp_openid when the notice was made
    event = fields.CharField(max_length=16)  # accepted | declined
    template_id = fields.CharField(max_length=64, default="")
    status = fields.CharField(max_length=16, default="pending")  # pending | sent | failed | skipped
    attempts = fields.IntField(default=0)
    last_error = fields.TextField(default="")
    # While a delivery of the event is sending it: another delivery leaves it alone until then (a lease, so a
    # worker that died mid-send does not hold it for ever).
    sending_until = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "consultation_notice"
        unique_together = (("consultation", "user", "event"),)
