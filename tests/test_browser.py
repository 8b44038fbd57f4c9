"""A real Chromium, driven by Playwright, against the real web and worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Servers

pytestmark = [pytest.mark.live, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser(servers: Servers) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it with apt-get (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls that the DB
    # fixtures make between tests are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, servers: Servers, transactional_db: None) -> Iterator[Any]:
    context = browser.new_context(base_url=servers.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def sign_up(page: Any, username: str) -> None:
    page.goto("/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_email", f"{username}@example.com")
    page.fill("#id_password1", "a long enough passphrase 42")
    page.fill("#id_password2", "a long enough passphrase 42")
    page.click("button[type=submit]")
    page.wait_for_url("**/create/")


def test_a_new_user_signs_up_and_watches_an_image_form(page: Any) -> None:
    sign_up(page, "carol")
    page.wait_for_function("document.body.dataset.live === '1'")
    page.fill("#prompt", "a lighthouse at dusk")
    page.fill("#width", "512")
    page.fill("#height", "512")
    page.fill("#steps", "60")
    page.click("#submit")
    card = page.locator(".gen-card").first
    card.wait_for()
    # The bar moves: a value strictly between empty and full is seen while it renders.
    page.wait_for_function(
        "() => { const b = document.querySelector('.gen-progress'); return b && b.value > 0 && b.value < 1; }"
    )
    assert page.locator(".gen-preview").first.is_visible()
    page.locator(".gen-images img").first.wait_for()
    page.wait_for_function("() => document.querySelector('.gen-images img').naturalWidth > 0")
    assert card.get_attribute("data-status") == "succeeded"
    assert "succeeded" in card.locator(".gen-status").inner_text()

    card.locator(".gen-title").click()
    page.wait_for_url("**/generations/**")
    assert "a lighthouse at dusk" in page.content()
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
