"""Third-party apps registered with Atelier (and tokens made for them as the token endpoint
would), and a member's side of authorizing one through a real HTTP session (sign in, read the
consent page, press Authorize); the app's side is authlib's OAuth 2 client, unmodified."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken, set_token_value

from accounts.models import User

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never fetched: the code is read from the redirect
PASSWORD = "correct horse battery staple"  # tests/conftest.make_user's
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@dataclass
class App:
    client_id: str
    client_secret: str
    name: str
    base_url: str

    def client(self, scope: str) -> OAuth2Session:
        """authlib's client for this app, PKCE with S256 on, as a third-party app would hold it."""
        return OAuth2Session(
            self.client_id,
            self.client_secret,
            scope=scope,
            redirect_uri=REDIRECT_URI,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",
        )

    def authorize_url(self, client: OAuth2Session) -> tuple[str, str]:
        """The authorization URL the app sends the member to, and its PKCE code verifier."""
        verifier = generate_token(48)  # RFC 7636: 43 to 128 characters
        url, _state = client.create_authorization_url(self.base_url + "/o/authorize/", code_verifier=verifier)
        return url, verifier

    def token(self, client: OAuth2Session, redirected_to: str, verifier: str) -> dict[str, Any]:
        token: dict[str, Any] = client.fetch_token(
            self.base_url + "/o/token/", authorization_response=redirected_to, code_verifier=verifier
        )
        return token


def register_app(base_url: str, name: str = "Pixel Pal") -> App:
    secret = "pixel-pal-secret-" + "s" * 32
    application = Application.objects.create(
        name=name,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=REDIRECT_URI,
        client_secret=secret,  # hashed when saved; the app keeps the plain one
        algorithm=Application.RS256_ALGORITHM,
    )
    return App(client_id=application.client_id, client_secret=secret, name=name, base_url=base_url)


def signed_in(base_url: str, user: User, password: str = PASSWORD) -> requests.Session:
    """A member's browser session, signed in through the sign-in form."""
    session = requests.Session()
    page = session.get(base_url + "/accounts/login/", timeout=30)
    form = {"csrfmiddlewaretoken": csrf_in(page.text), "login": user.username, "password": password}
    done = session.post(base_url + "/accounts/login/", data=form, timeout=30, allow_redirects=False)
    assert done.status_code == 302, done.text[:500]
    return session


def csrf_in(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def consent(session: requests.Session, authorize_url: str, *, allow: bool = True) -> str:
    """Open the consent page and answer it; the URL Atelier sends the browser back to the app with
    (at once, with an error, for a request that cannot be consented to)."""
    page = session.get(authorize_url, timeout=30, allow_redirects=False)
    if page.status_code == 302:
        return str(page.headers["Location"])
    assert page.status_code == 200, page.text[:500]
    form = {name: html.unescape(value) for name, value in HIDDEN.findall(page.text)}
    if allow:
        form["allow"] = "Authorize"
    answer = session.post(page.url, data=form, timeout=30, allow_redirects=False)
    assert answer.status_code == 302, answer.text[:500]
    return str(answer.headers["Location"])


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlparse(url).query).items()}


def app_token(user: User, scope: str, *, expires_in: int = 3600, name: str = "Pixel Pal") -> str:
    """An access token (and its refresh token) of a third-party app, as the token endpoint makes them."""
    app, _ = Application.objects.get_or_create(
        name=name,
        defaults={
            "client_type": Application.CLIENT_PUBLIC,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": "https://app.example/callback",
        },
    )
    raw = f"{name.replace(' ', '')}{user.pk}{AccessToken.objects.count()}token".ljust(30, "x")
    token = AccessToken(
        user=user, application=app, scope=scope, expires=timezone.now() + timedelta(seconds=expires_in)
    )
    set_token_value(token, raw)
    token.save()
    refresh = RefreshToken(user=user, application=app, access_token=token)
    set_token_value(refresh, raw + "refresh")
    refresh.save()
    return raw
