"""A page of an API list, by the paginator the API edge configures (api/pagination.py, wired in
``REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"]``), so that domain views need not import the edge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django.db.models import QuerySet
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView


def paginated(
    request: Request,
    view: APIView,
    queryset: QuerySet[Any],
    *,
    ordering: str | tuple[str, ...],
    page_size: int,
    render: Callable[[list[Any]], list[Any]],
) -> Response:
    """The page the request asks for, each row rendered by ``render`` (given the whole page)."""
    paginator_class = cast("type[CursorPagination]", api_settings.DEFAULT_PAGINATION_CLASS)
    paginator = paginator_class()
    paginator.ordering = ordering
    paginator.page_size = page_size
    page = paginator.paginate_queryset(queryset, request, view=view)
    assert page is not None
    return paginator.get_paginated_response(render(page))
