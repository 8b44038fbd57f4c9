"""Who is asking, behind the documented proxy: the sign-in lockout and /metrics's allowlist count
the client, not the proxy; the lockout's counter holds under parallel bursts (issue 17, Medium 6)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.test import Client

from accounts.models import User

PROXY = "10.0.0.2"  # the reverse proxy: every request arrives from it


def behind_proxy(client_address: str) -> Client:
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=client_address)


@pytest.mark.django_db
def test_one_clients_failures_behind_the_proxy_do_not_lock_everyone_out(settings: Any) -> None:
    settings.ATELIER_TRUSTED_PROXIES = 1
    settings.ATELIER_LOGIN_MAX_FAILURES = 3
    attacker = behind_proxy("203.0.113.5")
    for number in range(3):  # other accounts each time: only the address's count can lock
        response = attacker.post("/accounts/login/", {"login": f"guess{number}", "password": "x"})
        assert response.status_code == 200
    assert attacker.post("/accounts/login/", {"login": "guess9", "password": "x"}).status_code == 429
    # the attacker cannot step around it by writing an X-Forwarded-For of its own
    spoofing = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.99, 203.0.113.5")
    assert spoofing.post("/accounts/login/", {"login": "guess8", "password": "x"}).status_code == 429
    User.objects.create_user("bystander", password="another long password")
    ok = behind_proxy("198.51.100.7").post(
        "/accounts/login/", {"login": "bystander", "password": "another long password"}
    )
    assert ok.status_code == 302


@pytest.mark.django_db(transaction=True)
def test_a_parallel_burst_gets_no_more_tries_than_the_limit(settings: Any) -> None:
    settings.ATELIER_LOGIN_MAX_FAILURES = 5
    burst = 24
    start = threading.Barrier(burst)
    statuses: list[int] = []

    def guess(number: int) -> None:
        client = Client(REMOTE_ADDR="203.0.113.77")
        start.wait()
        response = client.post("/accounts/login/", {"login": f"user{number}", "password": "guess"})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(burst)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(statuses) == burst
    tried = [status for status in statuses if status != 429]
    assert len(tried) == 5, statuses  # each password checked took one of the five tries first


@pytest.mark.django_db
def test_metrics_allowlist_counts_the_client_not_the_local_proxy(settings: Any) -> None:
    settings.ATELIER_TRUSTED_PROXIES = 1
    settings.ATELIER_METRICS_TOKEN = ""
    settings.ATELIER_METRICS_ALLOW = ["127.0.0.1"]
    outsider = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert outsider.get("/metrics").status_code == 403


@pytest.mark.django_db
def test_sign_ups_from_one_address_are_limited_per_hour(settings: Any) -> None:
    """Each account comes with free credits: one address cannot farm them by the hundred."""
    settings.ATELIER_TRUSTED_PROXIES = 1
    settings.ATELIER_SIGNUPS_PER_HOUR = 3
    password = "a long enough password 17"

    def sign_up(client: Client, name: str) -> Any:
        fields = {
            "username": name,
            "email": f"{name}@example.com",
            "password1": password,
            "password2": password,
        }
        return client.post("/accounts/signup/", fields)

    for number in range(3):
        assert sign_up(behind_proxy("203.0.113.50"), f"farm{number}").status_code == 302
    refused = sign_up(behind_proxy("203.0.113.50"), "farm3")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert not User.objects.filter(username="farm3").exists()
    assert sign_up(behind_proxy("198.51.100.8"), "neighbour").status_code == 302
