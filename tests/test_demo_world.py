"""The built-in model's picture world, its captions and the judge (no model weights involved)."""

from __future__ import annotations

import random
from collections import Counter

from demo_model.captions import caption, parse
from demo_model.draw import render
from demo_model.evaluation import evaluation_set
from demo_model.judge import judge, request_of
from demo_model.world import COLOURS, SCENES, SHAPES, Picture, is_held_out, sample_picture


def test_it_reads_back_every_caption_the_world_writes() -> None:
    rng = random.Random(1)
    for _ in range(600):
        picture = sample_picture(rng)
        text = caption(picture, rng)
        request = parse(text)
        assert request.scene == picture.scene, text
        if picture.background != "scene":
            assert (request.background, request.colours) == (picture.background, picture.colours), text
            # Sizes are sometimes left unsaid; everything else must come back.
            assert [(g.colour, g.shape, g.position, g.count) for g in request.groups] == [
                (g.colour, g.shape, g.position, g.count) for g in picture.groups
            ], text


def test_it_understands_the_readme_prompts() -> None:
    request = parse("two small yellow stars in the top left corner on a dark green background")
    assert (request.background, request.colours) == ("solid", ("dark green",))
    group = request.groups[0]
    assert (group.colour, group.shape, group.size, group.position, group.count) == (
        "yellow",
        "star",
        "small",
        "top left",
        2,
    )
    assert parse("a lighthouse at dusk").scene == "lighthouse"
    assert parse("a house with a tree").scene == "house with a tree"
    assert parse("a sunset over the sea").scene == "sunset over the sea"
    assert parse("a big purple triangle at the bottom").groups[0].position == "bottom"


def test_training_never_draws_the_held_out_combinations() -> None:
    rng = random.Random(2)
    pictures = [sample_picture(rng) for _ in range(4000)]
    assert not any(is_held_out(group) for picture in pictures for group in picture.groups)
    seen_colours = {group.colour for picture in pictures for group in picture.groups}
    seen_shapes = {group.shape for picture in pictures for group in picture.groups}
    assert seen_colours == set(COLOURS) and seen_shapes == set(SHAPES)
    assert {picture.scene for picture in pictures} - {""} == set(SCENES)


def test_the_judge_reads_what_the_world_draws() -> None:
    rng = random.Random(3)
    totals: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for _ in range(150):
        picture = sample_picture(rng, held_out=True)
        for attribute, ok in judge(render(picture), request_of(picture)).items():
            totals[attribute] += 1
            right[attribute] += ok
    accuracy = {attribute: right[attribute] / totals[attribute] for attribute in totals}
    assert set(accuracy) == {"background", "colour", "position", "count", "shape", "scene"}
    assert min(accuracy.values()) >= 0.88, accuracy


def test_the_judge_says_no_to_the_wrong_picture() -> None:
    request = parse("a big red circle on a blue background")
    image = render(Picture(background="solid", colours=("blue",), groups=request.groups, seed=4))
    assert all(judge(image, "a big red circle on a blue background").values())
    wrong = judge(image, "a big green square at the top left on a yellow background")
    assert not any(wrong.values()), wrong
    assert judge(image, "a big red square on a blue background")["shape"] is False
    assert judge(image, "a big red circle in the top right corner on a blue background")["position"] is False
    assert judge(image, "two big red circles on a blue background")["count"] is False
    assert judge(image, "a sunset over the sea") == {"scene": False}


def test_the_evaluation_set_is_fixed_and_a_fifth_held_out() -> None:
    cases = evaluation_set()
    assert len(cases) >= 300 and cases == evaluation_set()
    assert sum(case.held_out for case in cases) == len(cases) // 5
    assert all(any(is_held_out(g) for g in case.picture.groups) for case in cases if case.held_out)
