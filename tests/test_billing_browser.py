"""Pricing -> Stripe Checkout (the local stub on localstripe) -> Billing shows the new plan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scripts.private_redis import free_port
from tests.billing_support import SECRET, create_prices
from tests.browser_support import open_page, sign_up
from tests.conftest import Servers, web_process
from tests.stripe_stub import StripeStub, start_localstripe, stop_localstripe

pytestmark = [pytest.mark.live, pytest.mark.browser]


@pytest.fixture(scope="module")
def billing_site(servers: Servers) -> Iterator[tuple[str, StripeStub]]:
    """A second web process with billing switched on, talking to Stripe through the stub."""
    process, localstripe_url = start_localstripe()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    stub = StripeStub(localstripe_url, f"{url}/billing/stripe/webhook/", SECRET).start()
    create_prices(stub.url)
    env = dict(
        servers.env,
        STRIPE_SECRET_KEY="sk_test_atelier",
        STRIPE_WEBHOOK_SECRET=SECRET,
        STRIPE_API_BASE=stub.url,
        ATELIER_CREDITS_NEED_VERIFIED_EMAIL="0",  # verifying: tests/test_accounts_browser.py
    )
    try:
        with web_process(env, "billing web", port):
            yield url, stub
    finally:
        stub.stop()
        stop_localstripe(process)


def test_choosing_a_plan_goes_through_checkout_and_shows_on_billing(
    browser: Any, billing_site: tuple[str, StripeStub], transactional_db: None
) -> None:
    url, stub = billing_site
    with open_page(browser, url) as page:
        sign_up(page, "paula")
        page.goto("/billing/")
        assert page.inner_text("#current-plan") == "Free"
        assert page.inner_text("#balance") == "25.00"
        page.goto("/pricing/")
        page.click("button[aria-label='Choose Standard']")
        page.wait_for_url(f"{stub.url}/checkout/**")
        page.click("text=Pay")
        page.wait_for_url(f"{url}/billing/**")
        assert page.inner_text("#current-plan") == "Standard"
        assert page.inner_text("#balance") == "900.00"
        assert page.locator("#renewal").is_visible()
        assert [e["type"] for e in stub.events] == [
            "checkout.session.completed",
            "customer.subscription.created",
            "invoice.paid",
        ]
        assert all(status == 200 for _, status in stub.deliveries)

        # The customer portal: an upgrade shows at once, a cancellation is kept until the period ends.
        page.click("text=Manage payment or cancel")
        page.wait_for_url(f"{stub.url}/portal/**")
        page.click("text=Switch to price_atelier_pro")
        page.wait_for_url(f"{url}/billing/**")
        assert page.inner_text("#current-plan") == "Pro"
        page.click("text=Manage payment or cancel")
        page.click("text=Cancel subscription")
        page.wait_for_url(f"{url}/billing/**")
        assert page.inner_text("#current-plan") == "Pro"
        assert page.inner_text("#scheduled-plan").startswith("Free on ")
        app_posts = [
            (path, key) for path, key in stub.api_posts if not path.startswith(("/v1/products", "/v1/plans"))
        ]
        assert {path for path, _ in app_posts} >= {
            "/v1/customers",
            "/v1/checkout/sessions",
            "/v1/billing_portal/sessions",
        }
        assert all(key for _, key in app_posts), "every Stripe POST carries an idempotency key"


def test_billing_pages_say_when_billing_is_disabled(
    browser: Any, servers: Servers, transactional_db: None
) -> None:
    with open_page(browser, servers.url) as page:
        sign_up(page, "quinn")
        page.goto("/billing/")
        assert "Billing is disabled" in page.inner_text("#billing-disabled")
        assert page.inner_text("#current-plan") == "Pro"  # the default plan when billing is off
        page.goto("/pricing/")
        assert page.locator(".plan").count() == 4
        assert page.locator("button[aria-label^='Choose']").count() == 0
