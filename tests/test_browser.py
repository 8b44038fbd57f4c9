"""A real Chromium, driven by Playwright, against the real web and worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser_support import open_page, sign_up, wait_until
from tests.conftest import Servers

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture
def page(browser: Any, servers: Servers, transactional_db: None) -> Iterator[Any]:
    with open_page(browser, servers.url) as page:
        yield page


def test_a_new_user_signs_up_and_watches_an_image_form(page: Any) -> None:
    sign_up(page, "carol")
    wait_until(page, "document.body.dataset.live === '1'")
    page.fill("#prompt", "a lighthouse at dusk")
    page.fill("#width", "512")
    page.fill("#height", "512")
    page.fill("#steps", "60")
    page.select_option("#sampler", "euler_a")
    wait_until(page, "document.getElementById('cost').textContent.includes('Cost: 3.00 credits')")
    page.click("#submit")
    card = page.locator(".gen-card").first
    card.wait_for()
    # The bar moves: a value strictly between empty and full is seen while it renders.
    moving = (
        "() => { const bar = document.querySelector('.gen-progress'); "
        "return bar?.value > 0 && bar.value < 1; }"
    )
    wait_until(page, moving)
    assert page.locator(".gen-preview").first.is_visible()
    page.locator(".gen-images img").first.wait_for()
    wait_until(page, "() => document.querySelector('.gen-images img').naturalWidth > 0")
    assert card.get_attribute("data-status") == "succeeded"
    assert "succeeded" in card.locator(".gen-status").inner_text()

    card.locator(".gen-title").click()
    page.wait_for_url("**/generations/**")
    assert "a lighthouse at dusk" in page.content() and "Euler ancestral" in page.content()
    download = page.locator("a.download").first
    assert download.get_attribute("href").endswith("?download=1")
    with page.expect_download() as info:
        download.click()
    assert info.value.suggested_filename.endswith(".png")


def test_the_form_shows_field_errors_and_signing_out_works(page: Any) -> None:
    sign_up(page, "dave")
    page.fill("#prompt", "a tree")
    page.fill("#width", "500")
    page.click("#submit")
    error = page.locator("#form-error")
    error.wait_for()
    assert "width" in error.inner_text()
    assert page.locator(".gen-card").count() == 0
    page.click("text=Sign out")
    page.wait_for_url("**/accounts/login/")
    page.goto("/create/")
    assert "/accounts/login/" in page.url
