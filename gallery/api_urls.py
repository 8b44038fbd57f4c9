from django.urls import path

from gallery import api

urlpatterns = [
    path("images/<str:image_id>", api.ImageDetailApi.as_view(), name="api_image_detail"),
    path("images/<str:image_id>/upscale", api.UpscaleApi.as_view(), name="api_image_upscale"),
    path("images/<str:image_id>/vary", api.VaryApi.as_view(), name="api_image_vary"),
    path("images/<str:image_id>/remix", api.RemixApi.as_view(), name="api_image_remix"),
    path("images/<str:image_id>/inpaint", api.InpaintApi.as_view(), name="api_image_inpaint"),
    path("images/<str:image_id>/publish", api.PublishApi.as_view(), name="api_image_publish"),
    path("images/<str:image_id>/unpublish", api.PublishApi.as_view(public=False), name="api_image_unpublish"),
    path("images/<str:image_id>/like", api.LikeApi.as_view(), name="api_image_like"),
    path("images/<str:image_id>/report", api.ReportApi.as_view(), name="api_image_report"),
    path("explore", api.ExploreApi.as_view(), name="api_explore"),
    path("users/<str:username>/images", api.ProfileImagesApi.as_view(), name="api_profile_images"),
    path("styles", api.StyleListApi.as_view(), name="api_styles"),
]
