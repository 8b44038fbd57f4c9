"""``/api/v1/`` for the gallery: image actions, publishing, likes, reports, Explore, profiles."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.callers import current_user, viewer
from accounts.models import User
from core.errors import ApiError
from core.openapi import errors
from core.pagination import paginated
from gallery import schema as gallery_schema
from gallery.selectors import (
    ORDERINGS,
    active_styles,
    explore_images,
    gallery_image_resource,
    liked_ids,
    owned_image,
    published_images_of,
    visible_image,
)
from gallery.services import (
    delete_image,
    inpaint_image,
    like_image,
    report_image,
    set_published,
    unlike_image,
    upscale_image,
    vary_image,
)
from generations import schema
from generations.models import Image
from generations.selectors import generation_resource, prefill, viewable_image
from generations.uploads import read_upload


def no_such_image() -> ApiError:
    return ApiError("not_found", "No such image.")


def mine(request: Request, image_id: str) -> Image:
    """The caller's own image; anyone else's, public or not, is indistinguishable from missing."""
    image = owned_image(current_user(request), image_id)
    if image is None:
        raise no_such_image()
    return image


def visible(image_id: str) -> Image:
    """A published, unhidden image: private and hidden ones are missing, whoever asks."""
    image = visible_image(image_id)
    if image is None:
        raise no_such_image()
    return image


GALLERY_PAGE_SIZE = 24


def image_page(request: Request, view: APIView, images: Any, ordering: tuple[str, ...]) -> Response:
    user = viewer(request)

    def render(page: list[Image]) -> list[dict[str, Any]]:
        likes = liked_ids(user, page)
        return [gallery_image_resource(i, viewer=user, liked=i.pk in likes) for i in page]

    return paginated(request, view, images, ordering=ordering, page_size=GALLERY_PAGE_SIZE, render=render)


def accepted(generation: Any) -> Response:
    body = generation_resource(generation)
    return Response(body, status=202, headers={"Location": body["url"]})


ACTION_ERRORS = errors(400, 401, 402, 403, 404, 429)
IMAGE_RESPONSES = {200: gallery_schema.GalleryImageSerializer, **errors(401, 404)}


class ImageDetailApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses={200: gallery_schema.GalleryImageSerializer, **errors(401, 404)})
    def get(self, request: Request, image_id: str) -> Response:
        user = viewer(request)
        image = viewable_image(user, image_id)
        if image is None:
            raise no_such_image()
        liked = bool(liked_ids(user, [image]))
        return Response(gallery_image_resource(image, viewer=user, liked=liked, with_lineage=True))

    @extend_schema(responses={204: None, **errors(401, 404)})
    def delete(self, request: Request, image_id: str) -> Response:
        if viewer(request) is None:
            raise ApiError("not_authenticated")
        delete_image(image=mine(request, image_id))
        return Response(status=204)


class UpscaleApi(APIView):
    @extend_schema(request=None, responses={202: schema.GenerationOutSerializer, **ACTION_ERRORS})
    def post(self, request: Request, image_id: str) -> Response:
        return accepted(upscale_image(user=current_user(request), image=mine(request, image_id)))


class VaryApi(APIView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        request=gallery_schema.VaryInSerializer,
        responses={202: schema.GenerationOutSerializer, **ACTION_ERRORS},
    )
    def post(self, request: Request, image_id: str) -> Response:
        image = mine(request, image_id)
        params = gallery_schema.VaryInSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        return accepted(
            vary_image(user=current_user(request), image=image, strength=params.validated_data["strength"])
        )


class InpaintApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request=gallery_schema.InpaintInSerializer,
        responses={202: schema.GenerationOutSerializer, **ACTION_ERRORS},
    )
    def post(self, request: Request, image_id: str) -> Response:
        image = mine(request, image_id)
        params = gallery_schema.InpaintInSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        generation = inpaint_image(
            user=current_user(request),
            image=image,
            mask=read_upload(data["mask"], "mask"),
            prompt=data["prompt"],
            negative_prompt=data.get("negative_prompt"),
        )
        return accepted(generation)


class RemixApi(APIView):
    @extend_schema(request=None, responses={200: gallery_schema.PrefillSerializer, **errors(401, 404)})
    def post(self, request: Request, image_id: str) -> Response:
        image = viewable_image(current_user(request), image_id)
        if image is None:
            raise no_such_image()
        return Response(prefill(image))


class PublishApi(APIView):
    public = True

    @extend_schema(request=None, responses={200: gallery_schema.GalleryImageSerializer, **errors(401, 404)})
    def post(self, request: Request, image_id: str) -> Response:
        image = set_published(image=mine(request, image_id), public=self.public, user=current_user(request))
        return Response(gallery_image_resource(image, viewer=current_user(request)))


class LikeApi(APIView):
    @extend_schema(request=None, responses={200: gallery_schema.GalleryImageSerializer, **errors(401, 404)})
    def post(self, request: Request, image_id: str) -> Response:
        image = like_image(user=current_user(request), image=visible(image_id))
        return Response(gallery_image_resource(image, viewer=current_user(request), liked=True))

    @extend_schema(request=None, responses={200: gallery_schema.GalleryImageSerializer, **errors(401, 404)})
    def delete(self, request: Request, image_id: str) -> Response:
        image = unlike_image(user=current_user(request), image=visible(image_id))
        return Response(gallery_image_resource(image, viewer=current_user(request), liked=False))


class ReportApi(APIView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        request=gallery_schema.ReportInSerializer,
        responses={201: gallery_schema.ReportOutSerializer, **errors(400, 401, 404)},
    )
    def post(self, request: Request, image_id: str) -> Response:
        image = visible(image_id)
        params = gallery_schema.ReportInSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        report = report_image(user=current_user(request), image=image, **params.validated_data)
        body = {
            "id": report.pk,
            "object": "report",
            "image": str(image.pk),
            "reason": report.reason,
            "status": report.status,
        }
        return Response(body, status=201)


class ExploreApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=gallery_schema.EXPLORE_PARAMETERS,
        responses={200: gallery_schema.GalleryPageSerializer, **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        params = gallery_schema.ExploreParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        sort = params.validated_data["sort"]
        images = explore_images(
            sort=sort, q=params.validated_data["q"], window=params.validated_data["window"]
        )
        return image_page(request, self, images, ORDERINGS[sort])


class ProfileImagesApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        parameters=gallery_schema.EXPLORE_PARAMETERS[3:],
        responses={200: gallery_schema.GalleryPageSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, username: str) -> Response:
        owner = User.objects.filter(username=username, is_active=True).first()
        if owner is None:
            raise ApiError("not_found", "No such member.")
        return image_page(request, self, published_images_of(owner), ORDERINGS["new"])


class StyleListApi(APIView):
    @extend_schema(responses={200: gallery_schema.StyleListSerializer, **errors(401)})
    def get(self, request: Request) -> Response:
        data = [
            {
                "id": s.slug,
                "object": "style",
                "name": s.name,
                "prompt_template": s.prompt_template,
                "negative_prompt": s.negative_prompt,
            }
            for s in active_styles()
        ]
        return Response({"data": data})
