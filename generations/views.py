from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.models import User
from billing.credits import account_for, effective_plan
from generations.extensions import style_presets
from generations.registry import all_models, default_model
from generations.samplers import SAMPLERS, samplers_for
from generations.selectors import generation_of, generation_resource, generations_of, prefill, viewable_image


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("create")
    return render(request, "home.html")


@login_required
def create(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)
    recent = [generation_resource(g) for g in generations_of(request.user)[:24]]
    plan = effective_plan(account_for(request.user))
    remix = viewable_image(request.user, request.GET["remix"]) if request.GET.get("remix") else None
    context = {
        "models": list(all_models().values()),
        "model_limits": {
            m.name: [m.min_side, m.max_side, m.default_side, m.size_step] for m in all_models().values()
        },
        "samplers": SAMPLERS,
        "model_samplers": {m.name: samplers_for(m.family) for m in all_models().values()},
        "default_model": default_model(),
        "recent": recent,
        "styles": style_presets(),
        "relax_allowed": plan.relax_allowed,
        "private_allowed": plan.private_allowed,
        "prefill": prefill(remix) if remix else None,
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
