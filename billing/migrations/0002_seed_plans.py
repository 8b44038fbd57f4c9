from typing import Any

from django.db import migrations

from billing.plans import seed_plans


def seed(apps: Any, schema_editor: Any) -> None:
    seed_plans(apps.get_model("billing", "Plan"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
