"""The API's one paginator (``REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"]``): cursor pages of
``{"data": [...], "next": url, "previous": url}``, ``?limit=`` up to 100. Views name their
ordering and page size through core/pagination.py."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import CursorPagination
from rest_framework.response import Response


class CursorPage(CursorPagination):
    ordering = "-created_at"
    page_size = 20
    max_page_size = 100
    page_size_query_param = "limit"

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"data": data, "next": self.get_next_link(), "previous": self.get_previous_link()})
