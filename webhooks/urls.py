from django.urls import path

from webhooks import api

urlpatterns = [
    path("webhooks", api.WebhookListApi.as_view(), name="api_webhooks"),
    path("webhooks/<str:endpoint_id>", api.WebhookDetailApi.as_view(), name="api_webhook_detail"),
    path("webhooks/<str:endpoint_id>/test", api.WebhookTestApi.as_view(), name="api_webhook_test"),
    path(
        "webhooks/<str:endpoint_id>/deliveries",
        api.WebhookDeliveriesApi.as_view(),
        name="api_webhook_deliveries",
    ),
]
