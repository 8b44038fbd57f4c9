"""One member's things stay theirs: a signed URL opens only the image it was made for, a
stranger cannot change or delete someone's webhook endpoint."""

from __future__ import annotations

import pytest
from django.test import Client

from generations.signing import signed_image_url
from tests.api_support import Api
from tests.gallery_support import make_image
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


def test_a_signed_url_opens_its_own_image_and_no_other(owner: Api, other: Api) -> None:
    assert owner.user is not None and other.user is not None
    granted, sibling = make_image(owner.user, public=False), make_image(owner.user, public=False)
    strangers = make_image(other.user, public=False)
    url = signed_image_url(granted)
    signature = url.split("?signature=", 1)[1]
    nobody = Client()
    assert nobody.get(url).status_code == 200
    for image in (sibling, strangers):
        reused = nobody.get(f"/api/v1/images/{image.id}/content", {"signature": signature})
        assert reused.status_code == 404, image
        assert reused.json()["error"]["code"] == "not_found"
    # A signature for the original does not open the thumbnail, nor the other way round.
    assert nobody.get(f"/api/v1/images/{granted.id}/thumbnail", {"signature": signature}).status_code == 404
    thumbnail_url = signed_image_url(granted, "thumbnail")
    assert nobody.get(thumbnail_url).status_code == 200
    thumbnail_signature = thumbnail_url.split("?signature=", 1)[1]
    content = nobody.get(f"/api/v1/images/{granted.id}/content", {"signature": thumbnail_signature})
    assert content.status_code == 404


def test_a_stranger_cannot_change_or_delete_a_webhook_endpoint(owner: Api, other: Api) -> None:
    assert owner.user is not None
    endpoint = WebhookEndpoint.objects.create(
        user=owner.user, url="https://example.com/hook", events=["generation.succeeded"], secret="s"
    )
    path = f"/api/v1/webhooks/{endpoint.id}"
    change = {"url": "https://attacker.example/steal", "enabled": False, "events": ["generation.failed"]}
    patched = other.client.patch(path, change, content_type="application/json")
    assert patched.status_code == 404 and patched.json()["error"]["code"] == "not_found"
    assert other.delete(path).status_code == 404
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.enabled, endpoint.events) == (
        "https://example.com/hook",
        True,
        ["generation.succeeded"],
    )
    assert owner.get(path).status_code == 200
