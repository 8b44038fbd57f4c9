"""API keys get scopes. Every key made before has every scope, so existing scripts keep working
(the column's default fills the existing rows)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_email_addresses")]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="scopes",
            field=models.CharField(default="generate read gallery:write billing:read", max_length=200),
        ),
    ]
