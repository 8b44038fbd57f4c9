"""What Schemathesis found (tests/test_api_fuzz.py), each kept as a focused regression test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from gallery.services import delete_image
from generations.retention import purge_deleted
from tests.api_support import Api
from tests.gallery_support import make_image
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


class RolledBack(Exception):
    pass


def test_a_deletion_rolled_back_keeps_the_images_files(owner: Api) -> None:
    """The files went before the deletion committed: a rolled-back deletion left a row whose
    content was a 500 (FileNotFoundError)."""
    assert owner.user is not None
    image = make_image(owner.user, public=False)
    image_id = image.id
    with pytest.raises(RolledBack), transaction.atomic():
        delete_image(image=image)
        raise RolledBack
    assert default_storage.exists(image.original)
    response = owner.get(f"/api/v1/images/{image_id}/content")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"


def test_a_committed_deletion_hides_the_image_at_once_and_the_purge_removes_its_files(
    owner: Api, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    assert owner.user is not None
    image = make_image(owner.user, public=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.delete(f"/api/v1/images/{image.id}").status_code == 204
    assert owner.get(f"/api/v1/images/{image.id}/content").status_code == 404
    assert default_storage.exists(image.original)  # lazy deletion: kept for the retention period
    settings.ATELIER_DELETED_RETENTION_DAYS = 0
    assert purge_deleted(timezone.now() + timedelta(seconds=1)) == 1
    assert not default_storage.exists(image.original)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/generations?model=a%00b", "model"),
        ("/api/v1/generations?q=fox%00", "q"),
        ("/api/v1/users/a%00b/images", "path"),
        ("/api/v1/explore?q=%00", "q"),
        ("/history/a%00b", "path"),
    ],
)
def test_a_nul_character_in_the_path_or_query_is_a_400_naming_it(owner: Api, path: str, field: str) -> None:
    """PostgreSQL refuses NUL in text: `?model=a%00b` and `/users/a%00b/images` were 500s (DataError)."""
    response = owner.client.get(path)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["details"]


def test_filters_and_names_without_nul_still_work(owner: Api) -> None:
    assert owner.user is not None
    assert owner.get("/api/v1/generations", model="atelier-demo", q="fox").status_code == 200
    assert owner.get(f"/api/v1/users/{owner.user.username}/images").status_code == 200


@pytest.mark.parametrize("body", ["false", "[]", '"text"', "3"])
def test_a_webhook_patch_whose_body_is_not_an_object_is_a_400(owner: Api, body: str) -> None:
    """`PATCH /api/v1/webhooks/{id}` with the JSON body `false` was a 500 (the stored URL was
    merged into the body as if it were an object)."""
    assert owner.user is not None
    endpoint = WebhookEndpoint.objects.create(user=owner.user, url="https://example.com/hook", secret="s")
    response = owner.client.patch(f"/api/v1/webhooks/{endpoint.id}", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.enabled) == ("https://example.com/hook", True)
    fine = owner.client.patch(
        f"/api/v1/webhooks/{endpoint.id}", {"enabled": False}, content_type="application/json"
    )
    assert fine.status_code == 200 and fine.json()["enabled"] is False
