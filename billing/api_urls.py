from django.urls import path

from billing import api

urlpatterns = [path("billing", api.BillingApi.as_view(), name="api_billing")]
