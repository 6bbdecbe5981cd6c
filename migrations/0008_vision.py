from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_kiosk')]

    initial = False

    operations = [
        ops.CreateModel(
            name='FaceEmbedding',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='face_embeddings', on_delete=OnDelete.CASCADE)),
                ('vector', fields.BinaryField()),
                ('source', fields.CharField(max_length=16)),
                ('quality', fields.FloatField(default=0.0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'face_embedding', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
