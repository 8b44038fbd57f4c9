"""The picture world the built-in model is trained on: what a picture may contain.

A `Picture` is a structured description (background, object groups or a scene); `draw.py` renders
it, `captions.py` writes it in words and reads words back. Everything is drawn by the project.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Bump when sampling, drawing or captions change: it is recorded in the model's manifest.
WORLD_VERSION = 1

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 25),
    "yellow": (245, 215, 35),
    "green": (45, 175, 60),
    "dark green": (20, 85, 40),
    "blue": (35, 80, 215),
    "light blue": (125, 185, 245),
    "purple": (125, 45, 175),
    "pink": (245, 125, 185),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "brown": (125, 75, 35),
    "grey": (128, 128, 128),
}

SHAPES = ("circle", "square", "triangle", "star", "heart", "ring", "cross", "diamond")

# Diameter as a fraction of the picture's side.
SIZES = {"small": 0.15, "medium": 0.25, "big": 0.38}

# (column, row) on a 3x3 grid; the phrase each position is written with lives in captions.py.
POSITIONS: dict[str, tuple[int, int]] = {
    "centre": (1, 1),
    "left": (0, 1),
    "right": (2, 1),
    "top": (1, 0),
    "bottom": (1, 2),
    "top left": (0, 0),
    "top right": (2, 0),
    "bottom left": (0, 2),
    "bottom right": (2, 2),
}

BACKGROUNDS = ("solid", "gradient", "night sky", "sea", "grass")

SCENES = ("sunset over the sea", "moon in a night sky", "house with a tree", "mountains", "lighthouse")

# Never drawn in training: the judge's held-out set shows the model composes them anyway.
HELD_OUT_COLOUR_SHAPE = ("pink", "cross")
HELD_OUT_SHAPE_POSITION = ("diamond", "bottom left")

# Colours that would vanish into a background kind.
CLASHES: dict[str, frozenset[str]] = {
    "night sky": frozenset({"black", "blue", "dark green", "purple", "brown", "grey"}),
    "sea": frozenset({"blue", "light blue"}),
    "grass": frozenset({"green", "dark green", "light blue"}),
}


@dataclass(frozen=True)
class Group:
    """`count` objects of one colour, shape and size around one position."""

    colour: str
    shape: str
    size: str
    position: str
    count: int = 1


@dataclass(frozen=True)
class Picture:
    background: str = "solid"
    colours: tuple[str, ...] = ()  # one for solid, two (top, bottom) for gradient
    groups: tuple[Group, ...] = ()
    scene: str = ""
    variant: str = ""  # a scene's time of day or colour ("dusk", "night", "red house", ...)
    seed: int = 0  # the arrangement within what is asked (jitter, stars, scene layout)
    extras: dict[str, str] = field(default_factory=dict, compare=False)


def is_held_out(group: Group) -> bool:
    return (group.colour, group.shape) == HELD_OUT_COLOUR_SHAPE or (
        group.shape,
        group.position,
    ) == HELD_OUT_SHAPE_POSITION


def fits(colour: str, picture_background: str, colours: tuple[str, ...]) -> bool:
    if colour in colours:
        return False
    return colour not in CLASHES.get(picture_background, frozenset())


def sample_picture(rng: random.Random, *, held_out: bool = False) -> Picture:
    """A random picture; `held_out` False never draws the held-out combinations."""
    seed = rng.randrange(2**31)
    if rng.random() < 0.22:
        scene = rng.choice(SCENES)
        return Picture(background="scene", scene=scene, variant=scene_variant(rng, scene), seed=seed)
    background = rng.choices(BACKGROUNDS, weights=(0.58, 0.12, 0.10, 0.10, 0.10))[0]
    colour_names = list(COLOURS)
    colours: tuple[str, ...] = ()
    if background == "solid":
        colours = (rng.choice(colour_names),)
    elif background == "gradient":
        first, second = rng.sample(colour_names, 2)
        colours = (first, second)
    for _ in range(100):
        groups = sample_groups(rng, background, colours)
        if held_out or not any(is_held_out(group) for group in groups):
            return Picture(background=background, colours=colours, groups=groups, seed=seed)
    raise RuntimeError("could not sample a picture outside the held-out combinations")


def sample_groups(rng: random.Random, background: str, colours: tuple[str, ...]) -> tuple[Group, ...]:
    palette = [name for name in COLOURS if fits(name, background, colours)]
    if rng.random() < 0.7:
        count = rng.choices((1, 2, 3), weights=(0.6, 0.25, 0.15))[0]
        size = rng.choice(("small", "medium")) if count > 1 else rng.choice(tuple(SIZES))
        return (Group(rng.choice(palette), rng.choice(SHAPES), size, rng.choice(tuple(POSITIONS)), count),)
    # Two or three single objects in different columns or rows.
    number = rng.choice((2, 2, 3))
    places: list[str] = rng.sample([p for p in POSITIONS if p != "centre"], number)
    while not distinct_places(places):
        places = rng.sample([p for p in POSITIONS if p != "centre"], number)
    # Each object its own colour: the caption then says unambiguously which one is where.
    own_colours = rng.sample(palette, number)
    return tuple(
        Group(colour, rng.choice(SHAPES), rng.choice(("small", "medium")), place)
        for colour, place in zip(own_colours, places, strict=True)
    )


def distinct_places(places: list[str]) -> bool:
    cells = [POSITIONS[p] for p in places]
    # Two cells apart in a row or a column: objects never touch, so each stays countable.
    return all(
        max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 2 for i, a in enumerate(cells) for b in cells[i + 1 :]
    )


def scene_variant(rng: random.Random, scene: str) -> str:
    if scene == "lighthouse":
        return rng.choice(("day", "dusk", "night"))
    if scene == "house with a tree":
        return rng.choice(("red", "white", "yellow", "brown"))
    if scene == "mountains":
        return rng.choice(("day", "snowy"))
    return ""
