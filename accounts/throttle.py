"""Sign-in throttling: after too many failed attempts for an address or an account, refuse more
for a while (with 429), so passwords cannot be guessed at speed. Counts live in Redis, shared by
every web process; if Redis is away, sign-in still works."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

from core.redis import redis_client


def failure_keys(request: HttpRequest) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "")
    username = str(request.POST.get("username", "")).strip().lower()
    keys = [f"atelier:login-fail:ip:{address}"]
    if username:
        keys.append("atelier:login-fail:user:" + hashlib.sha256(username.encode()).hexdigest()[:32])
    return keys


class ThrottledLoginView(auth_views.LoginView):
    template_name = "accounts/login.html"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        keys = failure_keys(request)
        try:
            counts = [int(v or 0) for v in redis_client().mget(keys)]
        except RedisError:
            counts = []
        if counts and max(counts) >= settings.ATELIER_LOGIN_MAX_FAILURES:
            form = self.get_form()
            minutes = settings.ATELIER_LOGIN_LOCKOUT_SECONDS // 60
            form.add_error(None, f"Too many failed sign-ins. Try again in {minutes} minutes.")
            response = self.render_to_response(self.get_context_data(form=form), status=429)
            response["Retry-After"] = str(settings.ATELIER_LOGIN_LOCKOUT_SECONDS)
            return response
        response = super().post(request, *args, **kwargs)
        try:
            pipe = redis_client().pipeline()
            if response.status_code == 302:  # signed in: the account's count starts again
                for key in keys[1:]:
                    pipe.delete(key)
            else:
                for key in keys:
                    pipe.incr(key)
                    pipe.expire(key, settings.ATELIER_LOGIN_LOCKOUT_SECONDS)
            pipe.execute()
        except RedisError:
            pass
        return response
