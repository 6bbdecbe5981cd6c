from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0006_care')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Kiosk',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('key_hash', fields.CharField(unique=True, max_length=64)),
                ('key_hint', fields.CharField(default='', max_length=12)),
                ('hospital', fields.ForeignKeyField('models.Hospital', source_field='hospital_id', null=True, db_constraint=True, to_field='id', related_name='kiosks', on_delete=OnDelete.SET_NULL)),
                ('active', fields.BooleanField(default=True)),
                ('last_seen', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'kiosk', 'app': 'models', 'pk_attr': 'id', 'table_description': "A kiosk and its API key. Only the key's SHA-256 is stored: the key is shown once, when the kiosk is added."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PatientBinding',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='patient_bindings', on_delete=OnDelete.CASCADE)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='bindings', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'patient_binding', 'app': 'models', 'unique_together': (('user', 'patient'),), 'pk_attr': 'id', 'table_description': 'A mini-program user who may act for a patient (themself, or a relative they look after).'},
            bases=['Model'],
        ),
    ]
