from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_kb_proposal')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Patient',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('number', fields.CharField(unique=True, max_length=16)),
                ('his_id', fields.CharField(null=True, unique=True, max_length=64)),
                ('name', fields.CharField(default='', max_length=64)),
                ('sex', fields.CharField(default='unknown', max_length=8)),
                ('birth_date', fields.DateField(null=True)),
                ('id_card_masked', fields.CharField(default='', max_length=32)),
                ('id_card_hash', fields.CharField(null=True, db_index=True, max_length=64)),
                ('phone', fields.CharField(default='', max_length=32)),
                ('his_photo_hash', fields.CharField(default='', max_length=64)),
                ('hospital', fields.ForeignKeyField('models.Hospital', source_field='hospital_id', null=True, db_constraint=True, to_field='id', related_name='patients', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'patient', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PatientCounter',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=16)),
                ('value', fields.IntField(default=0)),
            ],
            options={'table': 'patient_counter', 'app': 'models', 'pk_attr': 'name', 'table_description': 'The last patient number given; incremented atomically in the database.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PatientRecord',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('his_id', fields.CharField(null=True, unique=True, max_length=64)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='records', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=32)),
                ('title', fields.CharField(default='', max_length=128)),
                ('data', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('source', fields.CharField(default='', max_length=16)),
                ('recorded_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'patient_record', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Anything else kept about a patient: vitals taken at a kiosk, a report, a note.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Practitioner',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('his_id', fields.CharField(null=True, unique=True, max_length=64)),
                ('name', fields.CharField(default='', max_length=64)),
                ('department', fields.CharField(default='', max_length=64)),
                ('specialties', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('active', fields.BooleanField(default=True)),
                ('hospital', fields.ForeignKeyField('models.Hospital', source_field='hospital_id', null=True, db_constraint=True, to_field='id', related_name='practitioners', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'practitioner', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Visit',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('his_id', fields.CharField(null=True, unique=True, max_length=64)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='visits', on_delete=OnDelete.CASCADE)),
                ('hospital_name', fields.CharField(default='', max_length=128)),
                ('department', fields.CharField(default='', max_length=64)),
                ('practitioner', fields.ForeignKeyField('models.Practitioner', source_field='practitioner_id', null=True, db_constraint=True, to_field='id', related_name='visits', on_delete=OnDelete.SET_NULL)),
                ('doctor_name', fields.CharField(default='', max_length=64)),
                ('kind', fields.CharField(default='', max_length=32)),
                ('status', fields.CharField(default='', max_length=16)),
                ('diagnosis', fields.TextField(default='', unique=False)),
                ('medication', fields.TextField(default='', unique=False)),
                ('start_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('end_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'visit', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One encounter of a patient with the hospital (FHIR ``Encounter``).'},
            bases=['Model'],
        ),
    ]
