"""On S3, an object is public exactly while some image that uses it may be seen (issue 17, Low 10
and 12): hiding under a changelist filter makes it private, and content shared by two owners'
images follows both, not the last one changed."""

from __future__ import annotations

import pytest
import requests
from django.test import Client

from accounts.models import User
from gallery.services import set_published
from generations.models import Image
from generations.storage import public_url
from tests.gallery_support import make_image
from tests.test_s3 import s3  # noqa: F401 (the fixture: moto's S3 server as the media store)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("s3")]


def readable(path: str) -> bool:
    return requests.get(public_url(path), timeout=10).status_code == 200


def test_hiding_in_the_admin_under_a_filter_makes_the_object_private() -> None:
    image = make_image(User.objects.create_user("exhibitor"), public=False)
    set_published(image=image, public=True)
    assert readable(image.original)
    staff = Client()
    staff.force_login(User.objects.create_superuser("moderator", "", "a long staff password"))
    changelist = "/admin/generations/image/?hidden__exact=0"  # "not hidden": the rows leave the filter
    staff.post(changelist, {"action": "hide", "_selected_action": [str(image.pk)]})
    assert Image.objects.get(pk=image.pk).hidden
    assert not readable(image.original)


def test_content_shared_by_two_owners_images_stays_public_while_one_is_published() -> None:
    alice = make_image(User.objects.create_user("alice_s3"), public=False)
    set_published(image=alice, public=True)
    bob = make_image(User.objects.create_user("bob_s3"), public=False)
    # the same pixels make the same content-addressed object (generations/storage.py)
    Image.objects.filter(pk=bob.pk).update(original=alice.original, thumbnail=alice.thumbnail)
    bob.refresh_from_db()
    set_published(image=bob, public=True)
    set_published(image=bob, public=False)
    assert readable(alice.original)  # alice's published image still shows
    set_published(image=alice, public=False)
    assert not readable(alice.original)
