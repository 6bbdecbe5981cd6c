"""The monitoring domain's data: gateways that send telemetry, the downsampled reading history, error codes.

Readings are not stored one row each: a device sending every second would write 86,400 rows a day per metric.
``Reading`` keeps one row per device, metric and minute (count, min, max, sum, last), enough for charts, rates of
change and baselines; the latest value of each metric lives in Redis (``iot:latest:<device_id>``).
"""

from tortoise import fields
from tortoise.models import Model


class Gateway(Model):
    """A gateway (or a device speaking for itself) and its API key; only the key's SHA-256 is stored."""

    id = fields.IntField(primary_key=True)
    # Also the MQTT topic level (``medwx/<name>/readings``): letters, digits, ``_ . -`` only.
    name = fields.CharField(max_length=64, unique=True)
    key_hash = fields.CharField(max_length=64, unique=True)
    key_hint = fields.CharField(max_length=12, default="")
    hospital = fields.ForeignKeyField("models.Hospital", related_name="gateways", on_delete=fields.CASCADE)
    active = fields.BooleanField(default=True)
    rate_limit = fields.IntField(default=1000)  # readings per second (token bucket; bursts up to 5 s worth)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "iot_gateway"

    def __str__(self) -> str:
        return self.name


class Reading(Model):
    """One device's one metric over one minute (``bucket`` is the minute's start, UTC)."""

    id = fields.BigIntField(primary_key=True)
    device = fields.ForeignKeyField("models.Device", related_name="readings", on_delete=fields.CASCADE)
    metric = fields.CharField(max_length=32)
    bucket = fields.DatetimeField()
    count = fields.IntField()
    min = fields.FloatField()
    max = fields.FloatField()
    sum = fields.FloatField()
    # The value with the latest time in the minute (a late reading doesn't replace it). Not ``last``: tortoise
    # models have a ``last()`` of their own.
    last_value = fields.FloatField()
    last_at = fields.DatetimeField()

    class Meta:
        table = "iot_reading"
        unique_together = (("device", "metric", "bucket"),)


class ErrorCodeEvent(Model):
    """An error code a device reported (metric ``error_code``): kept one row each, the rules count them."""

    id = fields.BigIntField(primary_key=True)
    device = fields.ForeignKeyField("models.Device", related_name="error_codes", on_delete=fields.CASCADE)
    code = fields.CharField(max_length=32)
    at = fields.DatetimeField()

    class Meta:
        table = "iot_error_code"
        # The same code at the same moment is one event (a batch delivered twice stores it once).
        unique_together = (("device", "code", "at"),)
        indexes = (("device_id", "at"),)


# -- early warning (monitoring.rules, monitoring.alerts, monitoring.preventive) --------------------------------------
class MaintenanceRule(Model):
    """One early-warning rule of a device type (``*``: every type); the kinds and their params are described in
    ``monitoring.rules``. Loaded from a JSON file; a rule left out of a newer file is deactivated, not deleted."""

    id = fields.IntField(primary_key=True)
    device_type = fields.CharField(max_length=32)
    name = fields.CharField(max_length=64)  # the rule's key within its device type
    title = fields.CharField(max_length=64, default="")  # Chinese, shown in alerts and tickets
    metric = fields.CharField(max_length=32)
    kind = fields.CharField(max_length=16)  # threshold | rate | ewma | error_frequency | run_hours
    params = fields.JSONField(default=dict)
    severity = fields.CharField(max_length=16, default="medium")  # low | medium | high | critical
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "iot_rule"
        unique_together = (("device_type", "name"),)


class DeviceAlert(Model):
    """A rule that fired for a device, with the evidence and the risk score; open until its ticket is done.

    ``open_key`` (``<device>:<rule>``) is set while open and cleared on closing: its unique index lets one alert per
    device and rule be open at a time, however many workers see the same fault at once."""

    id = fields.BigIntField(primary_key=True)
    device = fields.ForeignKeyField("models.Device", related_name="alerts", on_delete=fields.CASCADE)
    rule = fields.ForeignKeyField("models.MaintenanceRule", related_name="alerts", null=True,
                                  on_delete=fields.SET_NULL)
    state = fields.CharField(max_length=8, default="open")  # open | closed
    open_key = fields.CharField(max_length=32, null=True, unique=True)
    severity = fields.CharField(max_length=16, default="medium")
    risk_score = fields.IntField(default=0)
    evidence = fields.JSONField(default=dict)
    hits = fields.IntField(default=1)  # times the rule fired while this alert was open
    last_seen_at = fields.DatetimeField()
    ticket = fields.ForeignKeyField("models.Ticket", related_name="alerts", null=True, on_delete=fields.SET_NULL)
    opened_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    closed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "iot_alert"
        indexes = (("device_id", "state"),)


class PreventiveSchedule(Model):
    """Scheduled preventive maintenance of a device type: a ticket per device every ``interval_days``.
    ``last_run_at`` is the claim that lets one worker of many run a round."""

    id = fields.IntField(primary_key=True)
    device_type = fields.CharField(max_length=32, unique=True)
    interval_days = fields.IntField()
    title = fields.CharField(max_length=64, default="")
    active = fields.BooleanField(default=True)
    last_run_at = fields.DatetimeField(null=True)
    last_created_at = fields.DatetimeField(null=True)  # when the last round opened a ticket

    class Meta:
        table = "iot_preventive_schedule"
