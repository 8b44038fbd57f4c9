"""Captions: a picture written many ways, and a request read back into a picture's terms."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import cast

from demo_model.world import COLOURS, POSITIONS, SCENES, SHAPES, SIZES, Group, Picture

NUMBER_WORDS = {1: ("a", "one", "1"), 2: ("two", "2", "a pair of"), 3: ("three", "3")}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "dot"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "star": ("star",),
    "heart": ("heart",),
    "ring": ("ring", "donut", "hoop"),
    "cross": ("cross", "plus sign"),
    "diamond": ("diamond", "rhombus"),
}
PLURALS = {"box": "boxes", "cross": "crosses", "plus sign": "plus signs", "rhombus": "rhombuses"}
SIZE_WORDS = {
    "small": ("small", "little", "tiny"),
    "medium": ("", "medium", "medium-sized"),
    "big": ("big", "large", "huge"),
}
COLOUR_WORDS = {"grey": ("grey", "gray"), "light blue": ("light blue", "sky blue")}
POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "centre": ("in the centre", "in the center", "in the middle", ""),
    "left": ("on the left", "at the left", "on the left side"),
    "right": ("on the right", "at the right", "on the right side"),
    "top": ("at the top", "near the top", "at the top of the picture"),
    "bottom": ("at the bottom", "near the bottom", "at the bottom of the picture"),
    "top left": ("in the top left corner", "at the top left", "in the upper left corner", "top left"),
    "top right": ("in the top right corner", "at the top right", "in the upper right corner", "top right"),
    "bottom left": (
        "in the bottom left corner",
        "at the bottom left",
        "in the lower left corner",
        "bottom left",
    ),
    "bottom right": (
        "in the bottom right corner",
        "at the bottom right",
        "in the lower right corner",
        "bottom right",
    ),
}
BACKGROUND_WORDS = {
    "night sky": ("in a night sky", "in the starry night sky", "on a night sky with stars"),
    "sea": ("over the sea", "above the sea", "in the sky over the ocean"),
    "grass": ("on grass", "above a meadow", "over green grass"),
}
SCENE_WORDS: dict[str, tuple[str, ...]] = {
    "sunset over the sea": (
        "a sunset over the sea",
        "sunset at sea",
        "the sun setting over the ocean",
        "a sunset",
    ),
    "moon in a night sky": (
        "the moon in a night sky",
        "a moon at night",
        "a night sky with the moon",
        "the moon",
    ),
    "house with a tree": ("a house with a tree", "a little house next to a tree", "a house and a tree"),
    "mountains": ("mountains", "a mountain range", "mountains under a blue sky", "mountain peaks"),
    "lighthouse": ("a lighthouse", "a lighthouse by the sea", "a lighthouse on a rock"),
}
VARIANT_WORDS = {
    ("lighthouse", "day"): ("during the day", "on a sunny day", ""),
    ("lighthouse", "dusk"): ("at dusk", "at sunset", "in the evening"),
    ("lighthouse", "night"): ("at night", "in the night"),
    ("mountains", "snowy"): ("with snow", "covered in snow", "snowy"),
    ("mountains", "day"): ("", "on a clear day"),
}


def pick(rng: random.Random, options: tuple[str, ...]) -> str:
    return rng.choice(options)


def colour_word(rng: random.Random, colour: str) -> str:
    return pick(rng, COLOUR_WORDS.get(colour, (colour,)))


def group_text(rng: random.Random, group: Group, *, sizes: bool = True) -> str:
    number = pick(rng, NUMBER_WORDS[group.count])
    shape = pick(rng, SHAPE_WORDS[group.shape])
    if group.count > 1:
        shape = PLURALS.get(shape, shape + "s")
    size = pick(rng, SIZE_WORDS[group.size]) if sizes else ""
    words = [number, size, colour_word(rng, group.colour), shape, pick(rng, POSITION_WORDS[group.position])]
    text = " ".join(word for word in words if word)
    if number == "a" and text[2] in "aeiou":
        text = "an" + text[1:]
    return text


def background_text(rng: random.Random, picture: Picture) -> str:
    if picture.background == "solid":
        colour = colour_word(rng, picture.colours[0])
        return pick(
            rng,
            (
                f"on a {colour} background",
                f"on {colour}",
                f"{colour} background",
                f"against a {colour} backdrop",
            ),
        )
    if picture.background == "gradient":
        top, bottom = (colour_word(rng, c) for c in picture.colours)
        return pick(rng, (f"on a {top} and {bottom} gradient", f"on a gradient from {top} to {bottom}"))
    return pick(rng, BACKGROUND_WORDS[picture.background])


def caption(picture: Picture, rng: random.Random) -> str:
    if picture.background == "scene":
        text = pick(rng, SCENE_WORDS[picture.scene])
        if picture.scene == "house with a tree" and rng.random() < 0.5:
            text = f"a {picture.variant} house with a tree"
        variant = VARIANT_WORDS.get((picture.scene, picture.variant))
        if variant:
            extra = pick(rng, variant)
            text = f"{extra} {text}" if extra == "snowy" else f"{text} {extra}".strip()
        return text
    groups = [group_text(rng, group, sizes=rng.random() < 0.85) for group in picture.groups]
    objects = groups[0] if len(groups) == 1 else ", ".join(groups[:-1]) + " and " + groups[-1]
    background = background_text(rng, picture)
    if picture.background == "solid" and rng.random() < 0.25:
        colour = (
            background.split(" background")[0]
            .removeprefix("on a ")
            .removeprefix("on ")
            .removeprefix("against a ")
        )
        colour = colour.removesuffix(" backdrop")
        return f"a {colour} background with {objects}"
    return f"{objects} {background}"


# Reading a request back: what the judge should look for in the image.
@dataclass(frozen=True)
class Request:
    background: str = ""  # "solid", "gradient", a background kind, "scene" or "" (not said)
    colours: tuple[str, ...] = ()
    groups: tuple[Group, ...] = ()
    scene: str = ""


COLOUR_PATTERN = "|".join(
    sorted((w for c in COLOURS for w in COLOUR_WORDS.get(c, (c,))), key=len, reverse=True)
)
SHAPE_LOOKUP = {w: s for s, words in SHAPE_WORDS.items() for w in words} | {
    PLURALS.get(w, w + "s"): s for s, words in SHAPE_WORDS.items() for w in words
}
SHAPE_PATTERN = "|".join(sorted(SHAPE_LOOKUP, key=len, reverse=True))
SIZE_LOOKUP = {w: s for s, words in SIZE_WORDS.items() for w in words if w}
COUNT_LOOKUP = {"a": 1, "an": 1, "one": 1, "1": 1, "two": 2, "2": 2, "a pair of": 2, "three": 3, "3": 3}
GROUP_RE = re.compile(
    rf"(?:(?P<count>a pair of|an|a|one|two|three|1|2|3)\s+)?(?:(?P<size>{'|'.join(SIZE_LOOKUP)})\s+)?"
    rf"(?P<colour>{COLOUR_PATTERN})\s+(?P<shape>{SHAPE_PATTERN})\b(?P<rest>(?:(?!\band\b)[^,])*)"
)
SCENE_KEYS = {
    "lighthouse": r"\blighthouse",
    "sunset over the sea": r"\bsunset|\bsun setting",
    "moon in a night sky": r"\bmoon\b",
    "house with a tree": r"\bhouse\b",
    "mountains": r"\bmountain",
}
POSITION_RE = re.compile(
    r"\b(top|bottom|upper|lower)?\s*(left|right)\b|\b(top|bottom|upper|lower)\b|\b(centre|center|middle)\b"
)


def colour_name(word: str) -> str:
    for colour, words in COLOUR_WORDS.items():
        if word in words:
            return colour
    return word


def position_of(text: str) -> str:
    match = POSITION_RE.search(text)
    if not match:
        return "centre"
    vertical = (match.group(1) or match.group(3) or "").replace("upper", "top").replace("lower", "bottom")
    horizontal = match.group(2) or ""
    if match.group(4):
        return "centre"
    return " ".join(part for part in (vertical, horizontal) if part)


def parse(text: str) -> Request:
    """The picture-world terms of a request written in words (the forms `caption` writes)."""
    text = text.lower().strip().rstrip(".")
    if not GROUP_RE.search(text):
        for scene, pattern in SCENE_KEYS.items():
            if re.search(pattern, text):
                return Request(background="scene", scene=scene)
    background, colours = "", cast(tuple[str, ...], ())
    solid = re.search(
        rf"(?:on an? |on |against an? |^an? )?({COLOUR_PATTERN})\s+(?:background|backdrop)", text
    )
    gradient = re.search(
        rf"({COLOUR_PATTERN}) and ({COLOUR_PATTERN}) gradient"
        rf"|gradient from ({COLOUR_PATTERN}) to ({COLOUR_PATTERN})",
        text,
    )
    plain = re.search(rf"\bon ({COLOUR_PATTERN})$", text)
    if gradient:
        words = [w for w in gradient.groups() if w]
        background, colours = "gradient", (colour_name(words[0]), colour_name(words[1]))
        text = text.replace(gradient.group(0), " ")
    elif solid or plain:
        match = solid or plain
        assert match is not None
        background, colours = "solid", (colour_name(match.group(1)),)
        text = text.replace(match.group(0), " ")
    else:
        for kind, phrases in BACKGROUND_WORDS.items():
            if any(phrase.split(" ", 1)[1] in text for phrase in phrases) or kind in text:
                background = kind
    groups = []
    for match in GROUP_RE.finditer(text):
        count = COUNT_LOOKUP.get(match.group("count") or "a", 1)
        size = SIZE_LOOKUP.get(match.group("size") or "", "medium")
        rest = match.group("rest")
        groups.append(
            Group(
                colour_name(match.group("colour")),
                SHAPE_LOOKUP[match.group("shape")],
                size,
                position_of(rest),
                count,
            )
        )
    return Request(background=background, colours=colours, groups=tuple(groups))


def vocabulary() -> list[str]:
    """Every word a caption can use (each becomes one token)."""
    texts = [*NUMBER_WORDS.values(), *SHAPE_WORDS.values(), tuple(PLURALS.values()), *SIZE_WORDS.values()]
    texts += [*COLOUR_WORDS.values(), tuple(COLOURS), *POSITION_WORDS.values(), *BACKGROUND_WORDS.values()]
    texts += [
        *SCENE_WORDS.values(),
        *VARIANT_WORDS.values(),
        tuple(SHAPES),
        tuple(SCENES),
        tuple(POSITIONS),
        tuple(SIZES),
    ]
    extra = (
        "an with on a and of from to background backdrop against gradient picture house shapes colours dusk"
    )
    words = {word for group in texts for phrase in group for word in re.findall(r"[a-z0-9]+", phrase)}
    words |= set(extra.split()) | {s + "s" for s in SHAPES}
    return sorted(words)
