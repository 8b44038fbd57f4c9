"""/accounts/ pages for leaving (config/urls.py includes them before allauth's own)."""

from django.urls import path

from generations import leaving_views

urlpatterns = [
    path("delete/", leaving_views.account_delete, name="account_delete"),
    path("restore/<str:token>/", leaving_views.account_restore_view, name="account_restore"),
    path("data/", leaving_views.data_export, name="data_export"),
    path("data/<uuid:export_id>/download/", leaving_views.data_export_download, name="data_export_download"),
]
