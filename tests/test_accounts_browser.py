"""In Chromium, against a web process whose mail goes out through a real SMTP server: sign up,
follow the verification mail, get the free credits; forget the password, reset it by mail; set up
an authenticator app, then sign in with its code and with a recovery code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser_support import open_page, sign_up
from tests.conftest import child_env, web_process
from tests.smtp_support import MailServer, link_in, smtp_env
from tests.totp_support import totp_code

pytestmark = [pytest.mark.live, pytest.mark.browser]

PASSWORD = "a long enough passphrase 42"  # tests/browser_support.sign_up's
NEW_PASSWORD = "a new and longer passphrase 99"


@pytest.fixture(scope="module")
def site(django_db_setup: None, smtp_server: MailServer) -> Iterator[str]:
    """A web process on the free plan, its monthly credits waiting for a verified address."""
    env = dict(
        child_env(),
        **smtp_env(smtp_server),
        ATELIER_DEFAULT_PLAN="free",
        ATELIER_CREDITS_NEED_VERIFIED_EMAIL="1",
    )
    with web_process(env) as url:
        yield url


def test_sign_up_verify_by_mail_then_reset_the_password_by_mail(
    browser: Any, site: str, smtp_server: MailServer, transactional_db: None
) -> None:
    with open_page(browser, site) as page:
        sign_up(page, "nora")
        page.goto("/billing/")
        assert page.inner_text("#balance") == "0.00"
        assert "verify your email address" in page.inner_text("#verify-for-credits")

        mail = smtp_server.wait_for_mail("nora@example.com", "Confirm")
        page.goto(link_in(mail, "/accounts/confirm-email/"))
        page.click("main button[type=submit]")
        page.goto("/accounts/email/")
        assert "Verified" in page.inner_text("main")
        page.goto("/billing/")
        assert page.inner_text("#balance") == "25.00"
        assert page.locator("#verify-for-credits").count() == 0

        page.click("text=Sign out (nora)")
        page.goto("/accounts/login/")
        page.click("text=Forgot your password?")
        page.fill("#id_email", "nora@example.com")
        page.click("main button[type=submit]")
        assert "sent you an email" in page.inner_text("main")

        mail = smtp_server.wait_for_mail("nora@example.com", "Password Reset")
        page.goto(link_in(mail, "/accounts/password/reset/key/"))
        page.fill("#id_password1", NEW_PASSWORD)
        page.fill("#id_password2", "not the same")
        page.click("main button[type=submit]")
        assert "You must type the same password each time." in page.inner_text("main")
        page.fill("#id_password1", NEW_PASSWORD)
        page.fill("#id_password2", NEW_PASSWORD)
        page.click("main button[type=submit]")
        assert "Your password is now changed." in page.inner_text("main")

        page.goto("/accounts/login/")
        page.fill("#id_login", "nora@example.com")
        page.fill("#id_password", NEW_PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_url("**/create/")


def sign_in(page: Any, login: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_login", login)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")


def test_an_authenticator_app_then_its_code_or_a_recovery_code_at_sign_in(
    browser: Any, site: str, transactional_db: None
) -> None:
    with open_page(browser, site) as page:
        sign_up(page, "olga")
        page.goto("/accounts/2fa/")
        page.click("main >> text=Activate")
        page.fill("#id_password", PASSWORD)  # the password again before the sign-in changes
        page.click("main button[type=submit]")
        secret = page.input_value("#authenticator_secret")
        page.fill("#id_code", totp_code(secret))
        page.click("main button[type=submit]")
        page.wait_for_url("**/accounts/2fa/recovery-codes/")
        codes = page.input_value("#recovery_codes").split()
        assert len(codes) == 10

        page.click("text=Sign out (olga)")
        sign_in(page, "olga", PASSWORD)
        page.wait_for_url("**/accounts/2fa/authenticate/")
        page.fill("#id_code", "123456")
        page.click("main button[type=submit]")
        assert "Incorrect code." in page.inner_text("main")
        page.fill("#id_code", totp_code(secret))
        page.click("main button[type=submit]")
        page.wait_for_url("**/create/")

        page.click("text=Sign out (olga)")
        sign_in(page, "olga@example.com", PASSWORD)
        page.fill("#id_code", codes[0])
        page.click("main button[type=submit]")
        page.wait_for_url("**/create/")

        page.click("text=Sign out (olga)")
        sign_in(page, "olga", PASSWORD)
        page.fill("#id_code", codes[0])  # spent
        page.click("main button[type=submit]")
        assert "Incorrect code." in page.inner_text("main")
