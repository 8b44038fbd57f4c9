"""What Schemathesis found (tests/test_api_fuzz.py), each kept as a focused regression test."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.db import transaction

from gallery.services import delete_image
from tests.api_support import Api
from tests.gallery_support import make_image

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


def test_a_committed_deletion_removes_the_files(owner: Api, django_capture_on_commit_callbacks: Any) -> None:
    assert owner.user is not None
    image = make_image(owner.user, public=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.delete(f"/api/v1/images/{image.id}").status_code == 204
    assert not default_storage.exists(image.original)
    assert owner.get(f"/api/v1/images/{image.id}/content").status_code == 404
