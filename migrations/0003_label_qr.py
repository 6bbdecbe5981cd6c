from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_repair')]

    initial = False

    operations = [
        ops.CreateModel(
            name='LabelQr',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('scene', fields.CharField(unique=True, max_length=64)),
                ('ticket', fields.CharField(max_length=255)),
                ('url', fields.CharField(max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'label_qr', 'app': 'models', 'pk_attr': 'id', 'table_description': 'The permanent WeChat QR code of one scene, created once and reused for every print.'},
            bases=['Model'],
        ),
    ]
