"""The gallery in a real Chromium: create -> upscale -> vary -> publish, then a second member finds
the image in Explore, likes it and uses its prompt; inpainting with a mask drawn on the canvas.

Screenshots of My images and Explore go to docs/screenshots/ when ATELIER_SCREENSHOTS=1 (that is
how the README's pictures are made; Create's is taken by test_demo_model_browser.py), else to a
temporary folder."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from generations.models import Generation
from generations.storage import open_content
from tests.browser_support import create_on_page, open_page, sign_up, wait_until
from tests.conftest import ROOT, Servers

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = ROOT / "docs" / "screenshots" if os.environ.get("ATELIER_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def pages(browser: Any, servers: Servers, transactional_db: None) -> Iterator[tuple[Any, Any]]:
    with open_page(browser, servers.url) as first, open_page(browser, servers.url) as second:
        yield first, second


def run_action(page: Any, button: str) -> str:
    """Click an action on the image page, follow it on Create, return the result's page URL."""
    page.click(button)
    status = page.locator("#action-status")
    status.wait_for()
    generation_id = status.get_attribute("data-generation")
    page.goto("/create/")
    card = page.locator(f".gen-card[data-id='{generation_id}']")
    card.locator(".gen-images img").first.wait_for()
    assert card.get_attribute("data-status") == "succeeded"
    href: str = card.locator(".gen-images a").first.get_attribute("href")
    return href


def test_create_upscale_vary_publish_then_another_member_likes_and_reuses_it(
    pages: tuple[Any, Any], shots: Path
) -> None:
    carol, dave = pages
    sign_up(carol, "carol")
    first = create_on_page(carol, "a lighthouse at dusk, oil painting")

    carol.goto(first)
    upscaled = run_action(carol, "button[data-action=upscale]")
    carol.goto(upscaled)
    assert carol.locator("#main-image").get_attribute("width") == "256"
    assert "upscale" in carol.locator(".lineage").first.inner_text()

    varied = run_action(carol, "button[data-strength=subtle]")
    carol.goto(varied)
    lineage = carol.locator(".lineage").first.inner_text()
    assert "vary_subtle" in lineage and "upscale" in lineage
    toggle = carol.locator("#publish-toggle")
    assert toggle.get_attribute("aria-pressed") == "false"  # the Pro plan starts private
    toggle.click()
    wait_until(carol, "document.getElementById('publish-toggle').getAttribute('aria-pressed') === 'true'")
    image_id = varied.strip("/").split("/")[-1]

    carol.goto("/images/")
    wait_until(carol, "document.getElementById('feed').dataset.loaded === '1'")
    assert carol.locator("#feed .gen-tile").count() == 3
    carol.screenshot(path=str(shots / "my-images.png"), full_page=True)

    sign_up(dave, "dave")
    dave.goto("/explore/")
    tile = dave.locator(f".tile[data-id='{image_id}']")
    tile.wait_for()
    assert dave.locator("#feed .tile").count() == 1  # the private originals stay out
    like = tile.locator("button.like")
    like.click()
    tile.locator("button.like[aria-pressed=true]").wait_for()
    assert like.inner_text().endswith("1")
    dave.screenshot(path=str(shots / "explore.png"), full_page=True)

    dave.goto("/explore/?sort=top&q=lighthouse")
    dave.locator(f".tile[data-id='{image_id}'] a.use-prompt").click()
    dave.wait_for_url("**/create/?remix=*")
    assert dave.input_value("#prompt") == "a lighthouse at dusk, oil painting"
    assert dave.input_value("#remix_of") == image_id
    assert dave.locator("#remix-note").is_visible()
    dave.click("#submit")
    dave.locator(".gen-card").first.locator(".gen-images img").first.wait_for()
    remix = Generation.objects.filter(user__username="dave").get()
    assert remix.action == "remix" and str(remix.parent_id) == image_id


def test_inpaint_with_a_mask_drawn_on_the_canvas(pages: tuple[Any, Any]) -> None:
    carol, _ = pages
    sign_up(carol, "erin")
    carol.goto(create_on_page(carol, "a bowl of fruit on a table"))
    carol.click("#inpaint-open")
    canvas = carol.locator("#mask-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    carol.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    carol.mouse.down()
    carol.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=8)
    carol.mouse.up()
    carol.fill("#inpaint-prompt", "a golden pear")
    result = run_action(carol, "#inpaint-submit")
    carol.goto(result)
    assert "inpaint" in carol.locator(".lineage").first.inner_text()
    inpainted = Generation.objects.get(prompt="a golden pear")
    assert inpainted.kind == "inpaint" and inpainted.mask_upload is not None

    mask = Image.open(io.BytesIO(open_content(inpainted.mask_upload.file))).convert("L")
    assert mask.size == (128, 128)
    assert mask.getpixel((64, 58)) == 255 and mask.getpixel((2, 2)) == 0  # on the stroke, far from it


def test_the_gallery_pages_fit_a_phone(browser: Any, servers: Servers, transactional_db: None) -> None:
    context = browser.new_context(
        base_url=servers.url, viewport={"width": 390, "height": 844}, has_touch=True
    )
    phone = context.new_page()
    phone.set_default_timeout(60_000)
    try:
        sign_up(phone, "fran")
        image_page = create_on_page(phone, "a tiny boat")
        for path in ("/create/", "/images/", "/explore/", image_page, "/u/fran/"):
            phone.goto(path)
            overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
        phone.goto(image_page)
        # Every control on the image page has an accessible name.
        unnamed = phone.evaluate(
            """[...document.querySelectorAll('#image-page button, #image-page input, #image-page select')]
                 .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                                 && !el.textContent.trim()).map((el) => el.outerHTML)"""
        )
        assert unnamed == []
    finally:
        context.close()
