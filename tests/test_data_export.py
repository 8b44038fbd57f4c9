"""Download my data (issue 18, point 6): the button queues an export that the dispatcher's chore
makes in the background (never the request); the zip holds the images and uploads and a JSON of
every generation; the link is mailed and shown on the page, works for its owner only, and the
file is deleted once it expires."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.test import Client
from django.utils import timezone

from accounts.models import DataExport, ExportStatus, User
from billing.credits import account_for
from billing.models import CreditEntry, EntryKind
from generations.leaving_chores import run_leaving_chores
from generations.models import GenerationStatus
from generations.services import upload_create
from generations.storage import open_content
from tests.factories import queued_generation
from tests.gallery_support import make_image, png_bytes

pytestmark = pytest.mark.django_db


def signed_in(username: str) -> tuple[User, Client]:
    user = User.objects.create_user(username, email=f"{username}@example.com")
    client = Client()
    client.force_login(user)
    return user, client


def download_path() -> str:
    found = re.search(r"http://testserver(/accounts/data/[0-9a-f-]+/download/)", str(mail.outbox[-1].body))
    assert found, mail.outbox[-1].body
    return found.group(1)


def test_the_export_is_made_in_the_background_and_mailed() -> None:
    user, client = signed_in("taker")
    image = make_image(user, "a lighthouse at dusk", public=False)
    CreditEntry.objects.create(
        account=account_for(user), kind=EntryKind.CAPTURE, amount=0, credits=1_50, generation=image.generation
    )
    queued_generation(user, prompt="still waiting")
    upload = upload_create(user=user, data=png_bytes(16, 16, (1, 2, 3)))

    assert client.post("/accounts/data/").status_code == 302
    export = DataExport.objects.get(user=user)
    assert export.status == ExportStatus.PENDING and export.file == "" and mail.outbox == []
    assert client.post("/accounts/data/").status_code == 302
    assert DataExport.objects.filter(user=user).count() == 1  # one at a time
    assert 'data-status="pending"' in client.get("/accounts/data/").content.decode()

    assert run_leaving_chores().exported == 1
    export.refresh_from_db()
    assert export.status == ExportStatus.READY and export.expires_at is not None
    (message,) = mail.outbox
    assert message.to == ["taker@example.com"] and "ready" in message.subject
    path = download_path()
    assert path in client.get("/accounts/data/").content.decode()  # offered on the page too

    response = client.get(path)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.getvalue()))
    document = json.loads(archive.read("generations.json"))
    by_prompt = {g["prompt"]: g for g in document["generations"]}
    assert set(by_prompt) == {"a lighthouse at dusk", "still waiting"}
    done = by_prompt["a lighthouse at dusk"]
    assert done["status"] == GenerationStatus.SUCCEEDED and done["credits_charged"] == "1.50"
    assert (done["seed"], done["steps"], done["width"], done["model"]) == (42, 6, 64, "atelier-demo")
    assert done["created_at"].endswith("Z")
    (entry,) = done["images"]
    assert archive.read(entry["file"]) == open_content(image.original)
    assert by_prompt["still waiting"]["images"] == [] and by_prompt["still waiting"]["status"] == "queued"
    (kept_upload,) = document["uploads"]
    assert archive.read(kept_upload["file"]) == open_content(upload.file)
    assert document["user"]["username"] == "taker"


def test_only_the_owner_can_download_it() -> None:
    owner, client = signed_in("owner")
    make_image(owner)
    client.post("/accounts/data/")
    run_leaving_chores()
    path = download_path()
    _, other = signed_in("other")
    assert other.get(path).status_code == 404
    anonymous = Client().get(path)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert client.get(path).status_code == 200


def test_an_expired_export_is_refused_and_its_file_deleted() -> None:
    user, client = signed_in("late")
    make_image(user)
    client.post("/accounts/data/")
    run_leaving_chores()
    path = download_path()
    export = DataExport.objects.get(user=user)
    assert default_storage.exists(export.file)
    DataExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(path).status_code == 404
    assert run_leaving_chores().expired == 1
    assert not default_storage.exists(export.file)
    assert DataExport.objects.get(pk=export.pk).status == ExportStatus.EXPIRED


def test_anonymous_visitors_are_sent_to_sign_in() -> None:
    for path in ("/accounts/data/", "/accounts/delete/"):
        response = Client().post(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not DataExport.objects.exists()


def test_an_export_left_half_made_by_a_stopped_dispatcher_is_made_again() -> None:
    user, client = signed_in("interrupted")
    make_image(user)
    client.post("/accounts/data/")
    DataExport.objects.filter(user=user).update(status=ExportStatus.RUNNING)  # claimed, then the process died
    assert run_leaving_chores().exported == 1
    assert DataExport.objects.get(user=user).status == ExportStatus.READY
