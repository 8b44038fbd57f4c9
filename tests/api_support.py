"""An API client as one user (or nobody): the owner / other user / anonymous trio of
tests/conftest.py."""

from __future__ import annotations

from typing import Any

from django.test import Client

from accounts.models import User
from accounts.services import api_key_create


class Api:
    def __init__(self, user: User | None) -> None:
        self.user = user
        self.client = Client()
        if user is not None:
            _, key = api_key_create(user=user)
            self.client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(path, body or {}, content_type="application/json")

    def upload(self, path: str, data: dict[str, Any]) -> Any:
        return self.client.post(path, data)

    def delete(self, path: str) -> Any:
        return self.client.delete(path)

    def request(self, method: str, path: str) -> Any:
        """Any method with an empty JSON body: what an authorization check sees first."""
        return self.client.generic(method.upper(), path, "{}", content_type="application/json")
