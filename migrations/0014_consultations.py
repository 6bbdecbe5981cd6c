from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0013_doctor_slots')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Consultation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='consultations', on_delete=OnDelete.CASCADE)),
                ('practitioner', fields.ForeignKeyField('models.Practitioner', source_field='practitioner_id', db_constraint=True, to_field='id', related_name='consultations', on_delete=OnDelete.RESTRICT)),
                ('slot', fields.ForeignKeyField('models.PractitionerSlot', source_field='slot_id', null=True, db_constraint=True, to_field='id', related_name='consultations', on_delete=OnDelete.SET_NULL)),
                ('status', fields.CharField(default='requested', db_index=True, max_length=16)),
                ('source', fields.CharField(default='', max_length=16)),
                ('kiosk', fields.ForeignKeyField('models.Kiosk', source_field='kiosk_id', null=True, db_constraint=True, to_field='id', related_name='consultations', on_delete=OnDelete.SET_NULL)),
                ('requested_by', fields.ForeignKeyField('models.User', source_field='requested_by_id', null=True, db_constraint=True, to_field='id', related_name='consultations_requested', on_delete=OnDelete.SET_NULL)),
                ('reason', fields.CharField(default='', max_length=500)),
                ('his_appointment_id', fields.CharField(null=True, unique=True, max_length=64)),
                ('answer_note', fields.CharField(default='', max_length=500)),
                ('room', fields.CharField(unique=True, max_length=32)),
                ('requested_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('answered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('ended_by', fields.CharField(default='', max_length=16)),
                ('duration_seconds', fields.IntField(null=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'consultation', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ConsultationMessage',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('consultation', fields.ForeignKeyField('models.Consultation', source_field='consultation_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('sender', fields.CharField(max_length=8)),
                ('kind', fields.CharField(default='text', max_length=8)),
                ('body', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'consultation_message', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DoctorAccount',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.OneToOneField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='doctor_account', on_delete=OnDelete.CASCADE)),
                ('practitioner', fields.OneToOneField('models.Practitioner', source_field='practitioner_id', db_constraint=True, to_field='id', related_name='account', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'doctor_account', 'app': 'models', 'pk_attr': 'id', 'table_description': "A console user (role ``doctor``) who is this practitioner: they see and answer the practitioner's"},
            bases=['Model'],
        ),
    ]
