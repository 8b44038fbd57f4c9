"""Members from before email addresses were managed keep theirs: each user's email becomes their
primary address, counted as verified (it is the address they signed up with, and their free
credits must not stop). Where several accounts gave the same address, the oldest keeps it
verified and the others must verify it, since only one account may hold a verified address."""

from typing import Any

from django.db import migrations


def addresses_from_user_emails(apps: Any, schema_editor: Any) -> None:
    User = apps.get_model("accounts", "User")
    EmailAddress = apps.get_model("account", "EmailAddress")
    verified = set(EmailAddress.objects.filter(verified=True).values_list("email", flat=True))
    with_primary = set(EmailAddress.objects.filter(primary=True).values_list("user_id", flat=True))
    for user_id, email in User.objects.exclude(email="").order_by("id").values_list("id", "email"):
        email = email.strip().lower()
        if EmailAddress.objects.filter(user_id=user_id, email=email).exists():
            continue
        EmailAddress.objects.create(
            user_id=user_id, email=email, verified=email not in verified, primary=user_id not in with_primary
        )
        verified.add(email)
        with_primary.add(user_id)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("account", "0009_emailaddress_unique_primary_email"),
    ]

    operations = [migrations.RunPython(addresses_from_user_emails, migrations.RunPython.noop)]
