"""Sign-in throttling: after too many failed attempts for an address or an account, refuse more
for a while (with 429), so passwords cannot be guessed at speed. Counts live in Redis, shared by
every web process; if Redis is away, sign-in still works.

The address is the client's behind our trusted proxies (core.client), not the proxy's. Each try
takes its place in the count before the password is checked (one atomic INCR per key), so a
burst of parallel tries gets no more than the limit; a try that signs in gives its place back."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from redis.exceptions import RedisError

from core.client import client_ip
from core.redis import redis_client


def failure_keys(request: HttpRequest) -> list[str]:
    address = client_ip(request)
    username = str(request.POST.get("username", "")).strip().lower()
    keys = [f"atelier:login-fail:ip:{address}"]
    if username:
        keys.append("atelier:login-fail:user:" + hashlib.sha256(username.encode()).hexdigest()[:32])
    return keys


class ThrottledLoginView(auth_views.LoginView):
    template_name = "accounts/login.html"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        keys = failure_keys(request)
        counts = claim_try(keys)
        if counts and max(counts) > settings.ATELIER_LOGIN_MAX_FAILURES:
            form = self.get_form()
            minutes = settings.ATELIER_LOGIN_LOCKOUT_SECONDS // 60
            form.add_error(None, f"Too many failed sign-ins. Try again in {minutes} minutes.")
            response = self.render_to_response(self.get_context_data(form=form), status=429)
            response["Retry-After"] = str(settings.ATELIER_LOGIN_LOCKOUT_SECONDS)
            return response
        response = super().post(request, *args, **kwargs)
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
    """The form was refused: the try made no account."""
    with contextlib.suppress(RedisError):
        redis_client().decr(signup_key(request))


def too_many_signups(request: HttpRequest, form: Any) -> HttpResponse:
    form.add_error(None, "Too many accounts were made from your address this hour. Try again later.")
    response = render(request, "accounts/signup.html", {"form": form}, status=429)
    response["Retry-After"] = "3600"
    return response
