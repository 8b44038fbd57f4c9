from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.models import User
from generations.registry import all_models, default_model
from generations.selectors import generation_of, generation_resource, generations_of


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("create")
    return render(request, "home.html")


@login_required
def create(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    recent = [generation_resource(g) for g in generations_of(request.user)[:24]]
    context = {
        "models": list(all_models().values()),
        "default_model": default_model(),
        "recent": recent,
    }
    return render(request, "generations/create.html", context)


@login_required
def generation_detail(request: HttpRequest, generation_id: str) -> HttpResponse:
    assert isinstance(request.user, User)
    generation = generation_of(request.user, generation_id)
    if generation is None:
        raise Http404("No such generation.")
    context = {"generation": generation, "resource": generation_resource(generation)}
    return render(request, "generations/detail.html", context)
