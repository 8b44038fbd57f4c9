"""Pricing -> Stripe Checkout (the local stub on localstripe) -> Billing shows the new plan."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from scripts.private_redis import free_port
from tests.billing_support import SECRET, create_prices
from tests.browser_support import open_page, sign_up
from tests.conftest import ROOT, Servers, stop, wait_for
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
    )
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_for(lambda: requests.get(url + "/pricing/", timeout=2).status_code == 200, 60, "billing web")
        yield url, stub
    finally:
        stop(web)
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
