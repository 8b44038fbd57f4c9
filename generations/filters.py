"""Filters of a list of generations or images by query parameters: status, model, dates, words."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import QuerySet

from core.errors import ApiError
from generations.models import Generation


def search_prompts(queryset: QuerySet[Any], q: str, *, field: str = "generation__prompt") -> QuerySet[Any]:
    """Full-text search on PostgreSQL (served by a GIN index), every word as a substring elsewhere.
    Either way the words travel as query parameters."""
    q = q.strip()
    if not q:
        return queryset
    if connection.vendor == "postgresql":
        vector = SearchVector(field, config="english")
        query = SearchQuery(q, config="english", search_type="websearch")
        searched: QuerySet[Any] = queryset.annotate(prompt_search=vector).filter(prompt_search=query)
        return searched
    for word in q.split()[:10]:
        queryset = queryset.filter(**{f"{field}__icontains": word})
    return queryset


def filtered_generations(generations: QuerySet[Generation], params: Any) -> QuerySet[Generation]:
    """My images' filters: status, model, created_after/created_before (ISO dates), q."""
    if params.get("status"):
        generations = generations.filter(status=params["status"])
    if params.get("model"):
        generations = generations.filter(model_name=params["model"])
    for name, lookup in (
        ("created_after", "created_at__date__gte"),
        ("created_before", "created_at__date__lte"),
    ):
        if params.get(name):
            generations = generations.filter(**{lookup: parse_date(name, params[name])})
    return search_prompts(generations, params.get("q", "")[:200], field="prompt")


def parse_date(field: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        message = "Use a date as YYYY-MM-DD."
        raise ApiError(
            "validation_error", f"Invalid field(s): {field}. {message}", {field: [message]}
        ) from None
