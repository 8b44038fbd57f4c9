"""Social sign-in through allauth's generic OpenID Connect provider, in Chromium, against a real
provider: the live Atelier web process acting as one (its /o/ endpoints, point 4 of issue 18).
A second Atelier, on a database of its own, is configured with ATELIER_OIDC_* only; a member of
the first signs into the second with their account there, after consenting on its page."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oauth2_provider.models import Application

from scripts.private_redis import free_port
from tests.browser_support import open_page
from tests.conftest import ROOT, Servers, child_env, make_user, web_process

pytestmark = [pytest.mark.live, pytest.mark.browser]

SECRET = "relying-party-secret-" + "r" * 32


@pytest.fixture
def relying_party(servers: Servers, transactional_db: None, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A second Atelier (its own SQLite database) whose sign-in offers the live one as an
    OpenID Connect provider; its URL (on ``localhost``, so that the two sites' cookies stay
    apart, as they would on two domains) and its database file."""
    port = free_port()
    url = f"http://localhost:{port}"
    Application.objects.create(
        name="Atelier on localhost",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=f"{url}/accounts/oidc/atelier/login/callback/",
        client_secret=SECRET,
        algorithm=Application.RS256_ALGORITHM,
    )
    client_id = Application.objects.get(name="Atelier on localhost").client_id
    database = tmp_path / "relying-party.sqlite3"
    env = dict(
        child_env(),
        DATABASE_URL=f"sqlite:///{database}",
        ATELIER_OIDC_PROVIDER_ID="atelier",
        ATELIER_OIDC_NAME="Atelier Cloud",
        ATELIER_OIDC_URL=f"{servers.url}/o",
        ATELIER_OIDC_CLIENT_ID=client_id,
        ATELIER_OIDC_CLIENT_SECRET=SECRET,
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    with web_process(env, "relying party", port=port):
        yield url, database


def test_a_member_signs_in_with_their_account_on_another_atelier(
    browser: Any, servers: Servers, relying_party: tuple[str, Path]
) -> None:
    url, database = relying_party
    pia = make_user("pia")
    pia.email = "pia@example.com"
    pia.save()
    with open_page(browser, url) as page:
        page.goto("/accounts/login/")
        page.click("text=Atelier Cloud")
        page.click("main button[type=submit]")  # allauth asks before leaving for the provider
        page.wait_for_url(servers.url + "/accounts/login/**")
        page.fill("#id_login", "pia")
        page.fill("#id_password", "correct horse battery staple")
        page.click("main button[type=submit]")
        assert page.inner_text("#app-name") == "Atelier on localhost"
        assert "See your username" in page.inner_text("#requested-scopes")
        page.click("button[name=allow]")
        page.wait_for_url(url + "/create/")
        assert "Sign out (pia)" in page.inner_text("header")

    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT provider, uid FROM socialaccount_socialaccount").fetchall()
    assert rows == [("atelier", str(pia.pk))]  # linked to the member's id on the provider
