from allauth.account.views import LogoutView
from django.urls import include, path

from accounts import views
from accounts.throttle import ThrottledLoginView, ThrottledSignupView

urlpatterns = [
    # Before allauth's own routes, which reverse to these same paths (account_signup ...).
    path("signup/", ThrottledSignupView.as_view(), name="signup"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api_key_revoke"),
    path("apps/", views.authorized_apps_view, name="authorized_apps"),
    path("", include("allauth.urls")),
]
