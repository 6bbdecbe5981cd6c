from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0011_iot_ingest')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApiClient',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('token_hint', fields.CharField(default='', max_length=12)),
                ('active', fields.BooleanField(default=True)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'api_client', 'app': 'models', 'pk_attr': 'id', 'table_description': "A hospital system reading vitals over ``/fhir``. Only the token's SHA-256 is stored (shown once at creation)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Observation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='observations', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=24)),
                ('code', fields.CharField(max_length=32)),
                ('values', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('unit', fields.CharField(default='', max_length=16)),
                ('measured_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('source', fields.CharField(default='', max_length=64)),
                ('attachment', fields.ForeignKeyField('models.MediaFile', source_field='attachment_id', null=True, db_constraint=True, to_field='id', related_name='observations', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'observation', 'app': 'models', 'indexes': [Index(fields=['patient_id', 'kind', 'measured_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
