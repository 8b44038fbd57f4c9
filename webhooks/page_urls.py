"""The webhooks page of the account settings, mounted under /accounts/ by config/urls.py."""

from django.urls import path

from webhooks import views

urlpatterns = [
    path("webhooks/", views.webhooks_page, name="webhooks_page"),
    path("webhooks/<uuid:endpoint_id>/toggle/", views.toggle, name="webhook_toggle"),
    path("webhooks/<uuid:endpoint_id>/test/", views.test_event, name="webhook_test"),
]
