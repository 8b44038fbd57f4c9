"""In Chromium, against a web process whose mail goes out through a real SMTP server, with the
real dispatcher process doing its chores: delete my account end to end (re-authentication,
confirmation mail, no sign-in afterwards, the purge once the grace period is over: files gone,
ledger kept without a name), and download my data (the request, the background export, the mail,
the zip's images and JSON, and another member refused)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import AccountClosure, User
from billing.credits import account_for
from billing.models import CreditEntry, EntryKind
from tests.browser_support import open_page, sign_up
from tests.conftest import ROOT, child_env, web_process
from tests.gallery_support import make_image
from tests.smtp_support import MailServer, link_in, smtp_env

pytestmark = [pytest.mark.live, pytest.mark.browser]

PASSWORD = "a long enough passphrase 42"  # tests/browser_support.sign_up's


@pytest.fixture(scope="module")
def site(django_db_setup: None, smtp_server: MailServer) -> Iterator[str]:
    with web_process(dict(child_env(), **smtp_env(smtp_server))) as url:
        yield url


def run_the_dispatcher_once(smtp_server: MailServer) -> None:
    """The real ``manage.py dispatcher --once``: one tick, and the chores it started, to the end."""
    env = dict(child_env(), **smtp_env(smtp_server))
    done = subprocess.run(
        [sys.executable, "manage.py", "dispatcher", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]


def on_disk(path: str) -> bool:
    return (Path(settings.MEDIA_ROOT) / path).exists()


def test_deleting_my_account_end_to_end(
    browser: Any, site: str, smtp_server: MailServer, transactional_db: None
) -> None:
    with open_page(browser, site) as page:
        sign_up(page, "leah")
        user = User.objects.get(username="leah")
        image = make_image(user, "my cat asleep", public=False)
        account = account_for(user)
        CreditEntry.objects.create(
            account=account, kind=EntryKind.CAPTURE, amount=0, credits=1_00, generation=image.generation
        )
        ledger = sorted(CreditEntry.objects.filter(account=account).values_list("kind", "amount", "credits"))
        assert on_disk(image.original)

        page.goto("/accounts/email/")
        page.click("text=Delete my account")
        assert "Deleting your account takes effect at once" in page.inner_text("main")
        page.fill("#confirm", "leah")
        page.click("#delete-account button[type=submit]")
        page.wait_for_url("**/accounts/reauthenticate/**")
        page.fill("input[name=password]", PASSWORD)
        page.click("main button[type=submit]")
        assert "Your account is closed" in page.inner_text("main")

        mail = smtp_server.wait_for_mail("leah@example.com", "closed")
        assert "/accounts/restore/" in link_in(mail, "/accounts/restore/")

        page.goto("/accounts/login/")
        page.fill("#id_login", "leah")
        page.fill("#id_password", PASSWORD)
        page.click("main button[type=submit]")
        assert "inactive" in page.inner_text("main").lower()
        page.goto("/create/")
        assert "/accounts/login/" in page.url  # not signed in

    run_the_dispatcher_once(smtp_server)
    assert on_disk(image.original)  # the grace period runs
    AccountClosure.objects.filter(user=user).update(purge_after=timezone.now() - timedelta(seconds=1))
    run_the_dispatcher_once(smtp_server)

    assert not on_disk(image.original)
    placeholder = User.objects.get(pk=user.pk)
    assert placeholder.username.startswith("deleted-") and placeholder.email == ""
    kept = CreditEntry.objects.filter(account__user=placeholder)
    assert sorted(kept.values_list("kind", "amount", "credits")) == ledger
    assert not kept.filter(generation__isnull=False).exists()
    assert not User.objects.filter(username="leah").exists()


def test_downloading_my_data(
    browser: Any, site: str, smtp_server: MailServer, transactional_db: None
) -> None:
    with open_page(browser, site) as page:
        sign_up(page, "ezra")
        user = User.objects.get(username="ezra")
        image = make_image(user, "a red circle on blue", public=False)

        page.goto("/accounts/email/")
        page.click("text=Download my data")
        page.click("#request-export button[type=submit]")
        assert "being prepared" in page.inner_text("main")
        assert page.locator('#exports tr[data-status="pending"]').count() == 1

        run_the_dispatcher_once(smtp_server)
        mail = smtp_server.wait_for_mail("ezra@example.com", "ready")
        link = link_in(mail, "/download/")

        page.goto("/accounts/data/")
        offered = page.locator("#exports a.download")
        assert site + str(offered.get_attribute("href")) == link
        with page.expect_download() as download:
            offered.click()
        archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
        document = json.loads(archive.read("generations.json"))
        (generation,) = document["generations"]
        assert generation["prompt"] == "a red circle on blue" and generation["status"] == "succeeded"
        (entry,) = generation["images"]
        assert archive.read(entry["file"]) == (Path(settings.MEDIA_ROOT) / image.original).read_bytes()

    with open_page(browser, site) as stranger:
        sign_up(stranger, "mallory")
        assert stranger.request.get(link).status == 404
