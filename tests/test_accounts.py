"""Sign-up, sign-in, API keys (shown once, stored hashed, revocable) and the staff admin."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import ApiKey, User
from accounts.services import api_key_create

pytestmark = pytest.mark.django_db

PASSWORD = "a long enough passphrase 42"


def test_it_signs_up_signs_in_and_out(client: Client) -> None:
    response = client.post(
        "/accounts/signup/",
        {"username": "erin", "email": "erin@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302 and response["Location"] == "/create/"
    assert client.get("/create/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/create/")["Location"].startswith("/accounts/login/")
    response = client.post("/accounts/login/", {"login": "erin", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/create/").status_code == 200


def test_a_mismatched_password_does_not_create_a_user(client: Client) -> None:
    response = client.post(
        "/accounts/signup/",
        {"username": "erin", "email": "e@example.com", "password1": PASSWORD, "password2": "other"},
    )
    assert response.status_code == 200
    assert not User.objects.filter(username="erin").exists()


def test_an_api_key_is_shown_once_stored_hashed_and_revocable(client: Client) -> None:
    user = User.objects.create_user("frank", password=PASSWORD)
    client.force_login(user)
    page = client.post("/accounts/api-keys/", {"name": "laptop"}).content.decode()
    match = re.search(r'<code id="new-key">([^<]+)</code>', page)
    assert match, "the new key is shown on the page"
    full_key = match.group(1)
    key = ApiKey.objects.get(user=user)
    assert full_key.startswith(key.prefix + ".")
    assert full_key.split(".", 1)[1] not in key.secret_hash
    assert full_key not in client.get("/accounts/api-keys/").content.decode()

    api = Client()
    assert api.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {full_key}").status_code == 200
    client.post(f"/accounts/api-keys/{key.id}/revoke/")
    assert api.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {full_key}").status_code == 401


def test_one_user_cannot_revoke_another_users_key(client: Client) -> None:
    owner = User.objects.create_user("gina", password=PASSWORD)
    key, _ = api_key_create(user=owner)
    client.force_login(User.objects.create_user("hank", password=PASSWORD))
    client.post(f"/accounts/api-keys/{key.id}/revoke/")
    key.refresh_from_db()
    assert key.is_active


def test_create_api_key_command_prints_a_working_key(client: Client) -> None:
    User.objects.create_user("ivy", password=PASSWORD)
    out = StringIO()
    call_command("create_api_key", "ivy", stdout=out)
    full_key = out.getvalue().strip()
    assert client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {full_key}").status_code == 200


def test_create_api_key_command_refuses_an_unknown_user() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("create_api_key", "nobody")


@pytest.mark.parametrize(
    "path",
    [
        "/admin/accounts/user/",
        "/admin/accounts/apikey/",
        "/admin/generations/generation/",
        "/admin/generations/image/",
        "/admin/generations/upload/",
        "/admin/rq/",
    ],
)
def test_staff_see_users_generations_images_keys_and_queues(admin_client: Client, path: str) -> None:
    assert admin_client.get(path).status_code == 200


def test_people_who_are_not_staff_do_not_get_the_admin(client: Client) -> None:
    client.force_login(User.objects.create_user("jo", password=PASSWORD))
    assert client.get("/admin/generations/generation/").status_code == 302
    assert client.get("/admin/rq/").status_code == 302
