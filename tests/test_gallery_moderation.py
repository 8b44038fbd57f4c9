"""Staff moderation through the admin: the report queue hides images and suspends members."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from accounts.services import api_key_create
from gallery.models import Profile, Report, ReportStatus
from generations.models import Image
from tests.gallery_support import make_image

pytestmark = pytest.mark.django_db


def run_action(client: Client, url: str, action: str, *pks: Any) -> Any:
    return client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True)


def test_staff_hide_a_reported_image_and_it_leaves_explore(admin_client: Client, client: Client) -> None:
    owner, reporter = User.objects.create_user("owner"), User.objects.create_user("reporter")
    image = make_image(owner)
    report = Report.objects.create(reporter=reporter, image=image, reason="violence")
    queue = admin_client.get("/admin/gallery/report/?status__exact=open")
    assert queue.status_code == 200 and str(image.id) in queue.content.decode()
    assert [i["id"] for i in client.get("/api/v1/explore").json()["data"]] == [str(image.id)]
    run_action(admin_client, "/admin/gallery/report/", "hide_images", report.pk)
    image.refresh_from_db()
    report.refresh_from_db()
    assert image.hidden and report.status == ReportStatus.ACTIONED and report.resolved_by is not None
    assert client.get("/api/v1/explore").json()["data"] == []
    assert client.get(f"/api/v1/images/{image.id}").status_code == 404
    assert str(image.id) not in client.get("/explore/").content.decode()


def test_staff_suspend_a_member_who_then_cannot_submit(admin_client: Client) -> None:
    owner, reporter = User.objects.create_user("owner"), User.objects.create_user("reporter")
    report = Report.objects.create(reporter=reporter, image=make_image(owner), reason="spam")
    run_action(admin_client, "/admin/gallery/report/", "suspend_owners", report.pk)
    assert Profile.objects.get(user=owner).suspended
    _, key = api_key_create(user=owner)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = api.post("/api/v1/generations", {"prompt": "a cat"}, content_type="application/json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "account_suspended"
    run_action(admin_client, "/admin/gallery/profile/", "reinstate", Profile.objects.get(user=owner).pk)
    response = api.post("/api/v1/generations", {"prompt": "a cat"}, content_type="application/json")
    assert response.status_code == 202


def test_staff_rate_an_image_mature(admin_client: Client) -> None:
    image = make_image(User.objects.create_user("owner"))
    run_action(admin_client, "/admin/generations/image/", "rate_mature", image.pk)
    assert Image.objects.get(pk=image.pk).content_rating == "mature"
    for page in ("/admin/gallery/stylepreset/", "/admin/gallery/blockedterm/", "/admin/gallery/profile/"):
        assert admin_client.get(page).status_code == 200
