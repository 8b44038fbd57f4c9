from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from generations import api

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
    path("generations", api.GenerationListApi.as_view(), name="api_generations"),
    path("generations/quote", api.GenerationQuoteApi.as_view(), name="api_generation_quote"),
    path("generations/<str:generation_id>", api.GenerationDetailApi.as_view(), name="api_generation_detail"),
    path(
        "generations/<str:generation_id>/cancel",
        api.GenerationCancelApi.as_view(),
        name="api_generation_cancel",
    ),
    path("uploads", api.UploadApi.as_view(), name="api_uploads"),
    path("images/<str:image_id>/content", api.ImageFileApi.as_view(), name="api_image_content"),
    path(
        "images/<str:image_id>/thumbnail",
        api.ImageFileApi.as_view(variant="thumbnail"),
        name="api_image_thumbnail",
    ),
    path("models", api.ModelListApi.as_view(), name="api_models"),
]
