from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0010_iot_rules')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ErrorCodeEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device', fields.ForeignKeyField('models.Device', source_field='device_id', db_constraint=True, to_field='id', related_name='error_codes', on_delete=OnDelete.CASCADE)),
                ('code', fields.CharField(max_length=32)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'iot_error_code', 'app': 'models', 'unique_together': (('device', 'code', 'at'),), 'indexes': [Index(fields=['device_id', 'at'])], 'pk_attr': 'id', 'table_description': 'An error code a device reported (metric ``error_code``): kept one row each, the rules count them.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Gateway',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('key_hash', fields.CharField(unique=True, max_length=64)),
                ('key_hint', fields.CharField(default='', max_length=12)),
                ('hospital', fields.ForeignKeyField('models.Hospital', source_field='hospital_id', db_constraint=True, to_field='id', related_name='gateways', on_delete=OnDelete.CASCADE)),
                ('active', fields.BooleanField(default=True)),
                ('rate_limit', fields.IntField(default=1000)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'iot_gateway', 'app': 'models', 'pk_attr': 'id', 'table_description': "A gateway (or a device speaking for itself) and its API key; only the key's SHA-256 is stored."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Reading',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('device', fields.ForeignKeyField('models.Device', source_field='device_id', db_constraint=True, to_field='id', related_name='readings', on_delete=OnDelete.CASCADE)),
                ('metric', fields.CharField(max_length=32)),
                ('bucket', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('count', fields.IntField()),
                ('min', fields.FloatField()),
                ('max', fields.FloatField()),
                ('sum', fields.FloatField()),
                ('last_value', fields.FloatField()),
                ('last_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'iot_reading', 'app': 'models', 'unique_together': (('device', 'metric', 'bucket'),), 'pk_attr': 'id', 'table_description': "One device's one metric over one minute (``bucket`` is the minute's start, UTC)."},
            bases=['Model'],
        ),
    ]
