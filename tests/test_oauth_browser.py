"""In Chromium: a member sent to the consent page with a bad request is told why; sent by a
registered third-party app, they see the app and what it asks for, authorize it, and the app
(authlib) gets a token that works; later the member revokes the app on the Authorized apps page
and the token stops working."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from accounts.scopes import SCOPES
from tests.browser_support import open_page, sign_up
from tests.conftest import Servers
from tests.oauth_support import REDIRECT_URI, register_app

pytestmark = [pytest.mark.live, pytest.mark.browser]


def api_status(base_url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(base_url + "/api/v1/generations", headers=headers, timeout=30).status_code


def test_a_member_authorizes_an_app_on_the_consent_page_then_revokes_it(
    browser: Any, servers: Servers, transactional_db: None
) -> None:
    app = register_app(servers.url)
    client = app.client("generate read")
    authorize_url, verifier = app.authorize_url(client)
    with open_page(browser, servers.url) as page:
        sign_up(page, "ines")
        page.goto("/o/authorize/?response_type=code&client_id=no-such-app&scope=read")
        assert "This app cannot be authorized" in page.inner_text("main")
        assert "invalid_request: Invalid client_id" in page.inner_text("#oauth-error")

        page.goto(authorize_url)
        assert page.inner_text("#app-name") == "Pixel Pal"
        asked = page.inner_text("#requested-scopes")
        assert SCOPES["generate"] in asked and SCOPES["read"] in asked
        assert SCOPES["billing:read"] not in asked
        # The browser is sent back to the app's redirect URI with the code (nothing listens there:
        # the app's side is authlib, here).
        with page.expect_request(lambda request: request.url.startswith(REDIRECT_URI)) as back:
            page.click("button[name=allow]")
        token = app.token(client, back.value.url, verifier)
        assert api_status(servers.url, token["access_token"]) == 200

        page.goto("/accounts/apps/")
        row = page.locator("#authorized-apps tr[data-app='Pixel Pal']")
        assert SCOPES["generate"] in row.inner_text() and SCOPES["billing:read"] not in row.inner_text()
        row.locator("button", has_text="Revoke access").click()
        assert "can no longer act for you" in page.inner_text("main")
        assert page.inner_text("#authorized-apps tbody") == "No apps can act for you."
        assert api_status(servers.url, token["access_token"]) == 401
