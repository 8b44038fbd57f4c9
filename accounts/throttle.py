"""Sign-in throttling: after too many failed attempts for an address or an account, refuse more
for a while (with 429), so passwords cannot be guessed at speed. An account is counted as the
user the login resolves to, whichever of its names (username, any address, any case) was typed.
Counts live in Redis, shared by every web process; if Redis is away, sign-in still works.

The address is the client's behind our trusted proxies (core.client), not the proxy's. Each try
takes its place in the count before the password is checked (one atomic INCR per key), so a
burst of parallel tries gets no more than the limit; a try that signs in gives its place back."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from allauth.account.models import EmailAddress
from allauth.account.views import LoginView, SignupView
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

from accounts.models import User
from core.client import client_ip
from core.redis import redis_client


def failure_keys(request: HttpRequest) -> list[str]:
    address = client_ip(request)
    login = str(request.POST.get("login", "")).strip().lower()  # a username or an email address
    keys = [f"atelier:login-fail:ip:{address}"]
    if login:
        keys.append("atelier:login-fail:user:" + account_key(login))
    return keys


def account_key(login: str) -> str:
    """The account a login names, so that tries as "bob", "BOB" and bob@example.com count as one;
    a login that names no account is counted by itself (hashed: it may be a mistyped password)."""
    user_id = (
        User.objects.filter(username__iexact=login).values_list("pk", flat=True).first()
        or EmailAddress.objects.filter(email__iexact=login).values_list("user_id", flat=True).first()
        or User.objects.filter(email__iexact=login).values_list("pk", flat=True).first()
    )
    if user_id is not None:
        return f"id:{user_id}"
    return hashlib.sha256(login.encode()).hexdigest()[:32]


class ThrottledLoginView(LoginView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        keys = failure_keys(request)
        counts = claim_try(keys)
        if counts and max(counts) > settings.ATELIER_LOGIN_MAX_FAILURES:
            minutes = settings.ATELIER_LOGIN_LOCKOUT_SECONDS // 60
            message = f"Too many failed sign-ins. Try again in {minutes} minutes."
            return refusal(self, message, settings.ATELIER_LOGIN_LOCKOUT_SECONDS)
        response: HttpResponse = super().post(request, *args, **kwargs)
        if response.status_code == 302 and counts:
            signed_in(keys)
        return response


def claim_try(keys: list[str]) -> list[int]:
    """Count this try for each key, atomically; the counts with it (none when Redis is away)."""
    try:
        pipe = redis_client().pipeline(transaction=True)
        for key in keys:
            pipe.incr(key)
            pipe.expire(key, settings.ATELIER_LOGIN_LOCKOUT_SECONDS)
        return [int(count) for count in pipe.execute()[::2]]
    except RedisError:
        return []


def signed_in(keys: list[str]) -> None:
    """The try was no failure: the address gives its place back, the account starts again."""
    try:
        pipe = redis_client().pipeline(transaction=True)
        pipe.decr(keys[0])
        for key in keys[1:]:
            pipe.delete(key)
        pipe.execute()
    except RedisError:
        pass


def signup_key(request: HttpRequest) -> str:
    return f"atelier:rl:signup:ip:{client_ip(request)}"


def claim_signup(request: HttpRequest) -> bool:
    """Take one of the address's sign-ups of this hour (ATELIER_SIGNUPS_PER_HOUR): every account
    comes with free credits, which must not be farmed. True when one was free (or Redis is away)."""
    try:
        pipe = redis_client().pipeline(transaction=True)
        pipe.set(signup_key(request), 0, ex=3600, nx=True)  # the hour starts at the first sign-up
        pipe.incr(signup_key(request))
        count = int(pipe.execute()[1])
    except RedisError:
        return True
    return count <= settings.ATELIER_SIGNUPS_PER_HOUR


def give_back_signup(request: HttpRequest) -> None:
    with contextlib.suppress(RedisError):
        redis_client().decr(signup_key(request))


class ThrottledSignupView(SignupView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not claim_signup(request):
            return refusal(
                self, "Too many accounts were made from your address this hour. Try again later.", 3600
            )
        response: HttpResponse = super().post(request, *args, **kwargs)
        if response.status_code != 302:
            give_back_signup(request)  # the form was refused: the try made no account
        return response


def refusal(view: Any, message: str, retry_after: int) -> HttpResponse:
    """The view's form again, with ``message``, as a 429 saying when to come back."""
    form = view.get_form()
    form.add_error(None, message)
    response: HttpResponse = view.render_to_response(view.get_context_data(form=form), status=429)
    response["Retry-After"] = str(retry_after)
    return response
