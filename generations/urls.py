from django.urls import path

from generations import views

urlpatterns = [
    path("", views.home, name="home"),
    path("create/", views.create, name="create"),
    path("generations/<str:generation_id>/", views.generation_detail, name="generation_detail"),
]
