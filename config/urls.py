from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found

from api import comfy_urls
from core import docs
from core.errors import error_body
from generations.admin_views import models_view, workers_view
from ops import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("docs/<slug:topic>/", docs.page, name="docs"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/workers/", workers_view, name="admin_workers"),
    path("admin/models/", models_view, name="admin_models"),
    path("admin/", admin.site.urls),
    path("accounts/", include("generations.leaving_urls")),  # delete my account, download my data
    path("accounts/", include("accounts.urls")),
    path("o/", include("accounts.oauth_urls")),  # OAuth 2 / OpenID Connect for third-party apps
    path("accounts/", include("webhooks.page_urls")),
    path("api/v1/", include("generations.api_urls")),
    path("api/v1/", include("webhooks.urls")),
    path("api/v1/", include("gallery.api_urls")),
    path("api/v1/", include("billing.api_urls")),
    path("v1/", include("api.openai_urls")),
    # ComfyUI's API, at its own paths and under /api/ (api/comfy_views.py)
    path("api/", include(comfy_urls.api_patterns)),
    path("", include(comfy_urls.root_patterns)),
    path("", include("billing.urls")),
    path("", include("generations.urls")),
    path("", include("gallery.urls")),
]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found"), status=404)
    return page_not_found(request, exception)


handler404 = not_found
