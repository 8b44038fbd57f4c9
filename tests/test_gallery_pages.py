"""The gallery's pages for an owner, another member and an anonymous visitor."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.test import Client
from PIL import Image as PILImage

from accounts.models import User
from gallery.models import Profile
from generations.models import Generation
from generations.samplers import SAMPLERS
from tests.factories import private_pool_model
from tests.gallery_support import make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner() -> User:
    return User.objects.create_user("owner", password="x")


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_image_page_shows_lineage_and_the_owners_actions(owner: User) -> None:
    parent = make_image(owner, "a castle")
    child = make_image(owner, "a castle", public=False)
    child.generation.parent, child.generation.action = parent, "upscale"
    child.generation.save()
    page = signed_in(owner).get(f"/images/{child.id}/").content.decode()
    assert 'data-action="upscale"' in page and 'id="inpaint-open"' in page and "publish-toggle" in page
    assert f"/images/{parent.id}/" in page and "upscale" in page
    other = signed_in(User.objects.create_user("other"))
    assert other.get(f"/images/{child.id}/").status_code == 404
    assert Client().get(f"/images/{child.id}/").status_code == 404
    public_page = other.get(f"/images/{parent.id}/").content.decode()
    assert "Use this prompt" in public_page and 'id="like-toggle"' in public_page
    assert 'data-action="upscale"' not in public_page and "report-form" in public_page
    assert Client().get(f"/images/{parent.id}/").status_code == 200


def test_the_lists_render_for_everyone_who_may_see_them(owner: User) -> None:
    assert Client().get("/explore/?sort=top&q=a%20fox").status_code == 200
    assert Client().get("/u/owner/").status_code == 200
    assert Client().get("/u/nobody/").status_code == 404
    assert Client().get("/images/").status_code == 302  # sign in first
    page = signed_in(owner).get("/images/?status=succeeded&q=fox").content.decode()
    assert 'data-feed="/api/v1/generations?status=succeeded&amp;q=fox"' in page


def test_create_is_prefilled_from_a_remix(owner: User) -> None:
    image = make_image(owner, "a lighthouse at dusk")
    page = signed_in(User.objects.create_user("other")).get(f"/create/?remix={image.id}").content.decode()
    assert '"remix_of": "' + str(image.id) in page and "a lighthouse at dusk" in page
    assert 'name="aspect" value="16:9"' in page and 'id="style_preset"' in page
    assert 'id="private"' in page  # the default plan here (Pro) has private mode
    missing = signed_in(owner).get("/create/?remix=not-an-id")
    assert (
        missing.status_code == 200
        and 'id="prefill-data" type="application/json">null' in missing.content.decode()
    )


def test_members_opt_in_to_mature_images(owner: User) -> None:
    client = signed_in(owner)
    assert 'data-show-mature="0"' in client.get("/explore/").content.decode()
    client.post("/settings/gallery/", {"show_mature": "on"})
    assert Profile.objects.get(user=owner).show_mature
    assert 'data-show-mature="1"' in client.get("/explore/").content.decode()


def test_the_original_downloads_as_webp_too(owner: User) -> None:
    image = make_image(owner, size=96)
    response = signed_in(owner).get(f"/api/v1/images/{image.id}/content?as=webp&download=1")
    assert response["Content-Type"] == "image/webp" and response["Content-Disposition"].endswith('.webp"')
    assert PILImage.open(io.BytesIO(response.content)).size == (96, 96)


def test_create_offers_the_samplers_each_model_can_run(owner: User, settings: Any) -> None:
    private_pool_model(settings, name="tiny-flow", family="sd3")
    image = make_image(owner, "a lighthouse at dusk")
    Generation.objects.filter(pk=image.generation_id).update(sampler="ddim")
    page = signed_in(owner).get(f"/create/?remix={image.id}").content.decode()
    assert '<select id="sampler" name="sampler">' in page
    assert '<option value="dpmpp_2m_karras">DPM++ 2M Karras</option>' in page
    offered = json.loads(page.split('id="model-samplers" type="application/json">')[1].split("</script>")[0])
    assert offered["tiny-flow"] == ["default", "euler"] and offered["atelier-demo"] == list(SAMPLERS)
    assert '"sampler": "ddim"' in page  # a remix starts from the parent's sampler
