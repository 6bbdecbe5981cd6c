from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0009_tickets_work')]

    initial = False

    operations = [
        ops.CreateModel(
            name='MaintenanceRule',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device_type', fields.CharField(max_length=32)),
                ('name', fields.CharField(max_length=64)),
                ('title', fields.CharField(default='', max_length=64)),
                ('metric', fields.CharField(max_length=32)),
                ('kind', fields.CharField(max_length=16)),
                ('params', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('severity', fields.CharField(default='medium', max_length=16)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'iot_rule', 'app': 'models', 'unique_together': (('device_type', 'name'),), 'pk_attr': 'id', 'table_description': 'One early-warning rule of a device type (``*``: every type); the kinds and their params are described in'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DeviceAlert',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device', fields.ForeignKeyField('models.Device', source_field='device_id', db_constraint=True, to_field='id', related_name='alerts', on_delete=OnDelete.CASCADE)),
                ('rule', fields.ForeignKeyField('models.MaintenanceRule', source_field='rule_id', null=True, db_constraint=True, to_field='id', related_name='alerts', on_delete=OnDelete.SET_NULL)),
                ('state', fields.CharField(default='open', max_length=8)),
                ('open_key', fields.CharField(null=True, unique=True, max_length=32)),
                ('severity', fields.CharField(default='medium', max_length=16)),
                ('risk_score', fields.IntField(default=0)),
                ('evidence', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('hits', fields.IntField(default=1)),
                ('last_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ticket', fields.ForeignKeyField('models.Ticket', source_field='ticket_id', null=True, db_constraint=True, to_field='id', related_name='alerts', on_delete=OnDelete.SET_NULL)),
                ('opened_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'iot_alert', 'app': 'models', 'indexes': [Index(fields=['device_id', 'state'])], 'pk_attr': 'id', 'table_description': 'A rule that fired for a device, with the evidence and the risk score; open until its ticket is done.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PreventiveSchedule',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device_type', fields.CharField(unique=True, max_length=32)),
                ('interval_days', fields.IntField()),
                ('title', fields.CharField(default='', max_length=64)),
                ('active', fields.BooleanField(default=True)),
                ('last_run_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_created_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'iot_preventive_schedule', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Scheduled preventive maintenance of a device type: a ticket per device every ``interval_days``.'},
            bases=['Model'],
        ),
    ]
