"""Thumbnails in several sizes in a real Chromium against the real web and worker processes: My
images and Explore offer them in `srcset`, every listed file exists, and a phone takes a thumbnail,
never the original; a deleted image is gone from both pages and its URL at once."""

from __future__ import annotations

from typing import Any

import pytest

from generations.models import Image
from tests.browser_support import create_on_page, open_page, sign_up, wait_until
from tests.conftest import Servers

pytestmark = [pytest.mark.live, pytest.mark.browser]

TILE_IMAGES = "#feed img"


def feed_images(page: Any, path: str) -> list[dict[str, str]]:
    page.goto(path)
    wait_until(page, "document.getElementById('feed').dataset.loaded === '1'")
    wait_until(page, f"[...document.querySelectorAll('{TILE_IMAGES}')].every((i) => i.complete)")
    images: list[dict[str, str]] = page.evaluate(
        f"""[...document.querySelectorAll('{TILE_IMAGES}')].map((i) => (
              {{srcset: i.getAttribute('srcset') || '', sizes: i.getAttribute('sizes') || '',
                current: i.currentSrc, width: String(i.naturalWidth)}}))"""
    )
    return images


def test_the_gallery_pages_offer_thumbnail_sizes_and_forget_a_deleted_image(
    browser: Any, servers: Servers, transactional_db: None
) -> None:
    context = browser.new_context(base_url=servers.url, viewport={"width": 390, "height": 844})
    phone = context.new_page()
    phone.set_default_timeout(60_000)
    try:
        sign_up(phone, "sasha")
        image_page = create_on_page(phone, "a lighthouse at dusk", side=512, steps=1)
        image_id = image_page.strip("/").split("/")[-1]
        phone.goto(image_page)
        if phone.get_attribute("#publish-toggle", "aria-pressed") != "true":
            phone.click("#publish-toggle")
            wait_until(phone, "document.querySelector('#publish-toggle[aria-pressed=true]')")
        for path in ("/images/", "/explore/"):
            [shown] = feed_images(phone, path)
            entries = [entry.strip().split(" ") for entry in shown["srcset"].split(",")]
            candidates = {width: url for url, width in entries}
            assert set(candidates) == {"256w", "512w"}, (path, shown)
            assert candidates["512w"].endswith(f"/api/v1/images/{image_id}/thumbnail?size=512")
            assert shown["sizes"]
            # The phone took a thumbnail from the set, never the original.
            assert "/thumbnail" in shown["current"] and "/content" not in shown["current"], shown
            for url in candidates.values():
                response = phone.request.get(url)
                assert response.status == 200 and response.headers["content-type"] == "image/webp", url

        with open_page(browser, servers.url) as desktop:  # anyone sees the published image, too
            [seen] = feed_images(desktop, "/explore/")
            assert "512w" in seen["srcset"]

        phone.goto(image_page)
        phone.once("dialog", lambda dialog: dialog.accept())
        phone.click("#delete-image")
        phone.wait_for_url("**/images/")
        assert phone.request.get(f"/api/v1/images/{image_id}/content").status == 404
        for path in ("/images/", "/explore/"):
            phone.goto(path)
            wait_until(phone, "document.getElementById('feed').dataset.loaded === '1'")
            assert phone.locator(f"{TILE_IMAGES}[srcset*='{image_id}']").count() == 0, path
        assert Image.all_objects.filter(pk=image_id, deleted_at__isnull=False).exists()
    finally:
        context.close()
