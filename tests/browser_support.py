"""Chromium (Debian's) driven by Playwright, shared by the browser tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
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
def browser(servers: Any) -> Iterator[Any]:
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


@contextmanager
def open_page(browser: Any, base_url: str) -> Iterator[Any]:
    """A page in a fresh context; leaving it fails the test if the page broke our
    Content-Security-Policy (the browser blocked something the UI tried to do)."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        yield page
        assert not violations, f"the page broke its Content-Security-Policy: {violations}"
    finally:
        context.close()


def wait_until(page: Any, expression: str, timeout: float = 60) -> None:
    """Poll a JavaScript expression (or arrow function) until it is truthy. Playwright's own
    wait_for_function compiles its predicate inside the page, which our CSP (no eval) refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} s: {expression}")
        time.sleep(0.01)


def sign_up(page: Any, username: str) -> None:
    page.goto("/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_email", f"{username}@example.com")
    page.fill("#id_password1", "a long enough passphrase 42")
    page.fill("#id_password2", "a long enough passphrase 42")
    page.click("button[type=submit]")
    page.wait_for_url("**/create/")


def create_on_page(page: Any, prompt: str, *, side: int = 128, steps: int = 6) -> str:
    """Submit a square image from Create (small and quick by default) and return the new image's
    page URL once it is shown."""
    page.goto("/create/")
    wait_until(page, "document.body.dataset.live === '1'")
    page.fill("#prompt", prompt)
    page.check("input[name=aspect][value='1:1']")
    page.fill("#width", str(side))
    page.fill("#height", str(side))
    page.fill("#steps", str(steps))
    page.click("#submit")
    card = page.locator(".gen-card").first
    card.locator(".gen-images img").first.wait_for(timeout=180_000)
    href: str = card.locator(".gen-images a").first.get_attribute("href")
    return href


def off_the_browser_loop(call: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
    """``call(*args)`` in a thread of its own: once a browser test has run, Playwright's session-wide
    browser keeps an event loop running in the test thread, where asyncio.run() refuses to start."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call, *args).result(timeout=timeout)
