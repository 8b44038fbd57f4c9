from django.urls import path

from gallery import views

urlpatterns = [
    path("images/", views.my_images, name="my_images"),
    path("images/<str:image_id>/", views.image_detail, name="image_detail"),
    path("explore/", views.explore, name="explore"),
    path("u/<str:username>/", views.profile, name="profile"),
    path("settings/gallery/", views.gallery_settings, name="gallery_settings"),
]
