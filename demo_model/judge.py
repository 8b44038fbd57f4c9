"""The judge: reads from an image alone what the picture world says it shows.

Independent of the diffusion model: background colour from the border, objects as connected regions
that differ from their row's background, each object's colour by the nearest named colour, its
shape by overlap with drawn templates, its position on a 3x3 grid, a group's count, and scenes by a
small linear classifier trained on blurred procedural renders.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from demo_model.captions import Request, parse
from demo_model.draw import draw_shape, render
from demo_model.world import COLOURS, POSITIONS, SCENES, SHAPES, Group, Picture, sample_picture

SIDE = 64
TEMPLATE = 16
MIN_AREA = 8
PALETTE_NAMES = list(COLOURS)
PALETTE = np.array([COLOURS[name] for name in PALETTE_NAMES], dtype=np.float32)
ATTRIBUTES = ("background", "colour", "position", "count", "shape", "scene")


@dataclass(frozen=True)
class Region:
    colour: str
    shape: str
    area: int
    x: float  # centroid, 0..1
    y: float


def nearest_colours(pixels: np.ndarray) -> np.ndarray:
    distances = ((pixels[..., None, :] - PALETTE) ** 2).sum(axis=-1)
    return np.asarray(distances.argmin(axis=-1))


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR), dtype=np.float32)


def background_colour(pixels: np.ndarray) -> str:
    border = np.concatenate(
        [
            pixels[:2].reshape(-1, 3),
            pixels[-2:].reshape(-1, 3),
            pixels[:, :2].reshape(-1, 3),
            pixels[:, -2:].reshape(-1, 3),
        ]
    )
    counts = np.bincount(nearest_colours(border), minlength=len(PALETTE_NAMES))
    return PALETTE_NAMES[int(counts.argmax())]


def label(mask: np.ndarray) -> list[np.ndarray]:
    """Connected regions (4-neighbour) of a boolean mask, as arrays of (row, column)."""
    seen = np.zeros_like(mask, dtype=bool)
    height, width = mask.shape
    regions = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        stack, cells = [start], []
        while stack:
            r, c = stack.pop()
            cells.append((r, c))
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < height and 0 <= nc < width and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    stack.append((nr, nc))
        regions.append(np.array(cells))
    return regions


def normalised_mask(cells: np.ndarray) -> np.ndarray:
    top, left = cells.min(axis=0)
    bottom, right = cells.max(axis=0)
    canvas = np.zeros((bottom - top + 1, right - left + 1), dtype=np.uint8)
    canvas[cells[:, 0] - top, cells[:, 1] - left] = 255
    resized = Image.fromarray(canvas).resize((TEMPLATE, TEMPLATE), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0 > 0.5


@functools.cache
def templates() -> dict[str, list[np.ndarray]]:
    found: dict[str, list[np.ndarray]] = {}
    for shape in SHAPES:
        for side in (20, 34, 60):
            image = Image.new("RGB", (96, 96))
            draw_shape(ImageDraw.Draw(image), shape, 48, 48, side, (255, 255, 255))
            mask = np.asarray(image)[..., 0] > 127
            found.setdefault(shape, []).append(normalised_mask(np.argwhere(mask)))
    return found


def shape_of(cells: np.ndarray) -> str:
    mask = normalised_mask(cells)
    best, best_score = SHAPES[0], -1.0
    for shape, masks in templates().items():
        for template in masks:
            score = float((mask & template).sum() / max(1, (mask | template).sum()))
            if score > best_score:
                best, best_score = shape, score
    return best


def regions(image: Image.Image) -> list[Region]:
    pixels = as_array(image)
    row_background = np.median(pixels, axis=1, keepdims=True)
    foreground = np.sqrt(((pixels - row_background) ** 2).sum(axis=-1)) > 60
    names = nearest_colours(pixels)
    found = []
    for cells in label(foreground):
        if len(cells) < MIN_AREA:
            continue
        colour_index = np.bincount(names[cells[:, 0], cells[:, 1]], minlength=len(PALETTE_NAMES)).argmax()
        y, x = cells.mean(axis=0) / SIDE
        found.append(
            Region(PALETTE_NAMES[int(colour_index)], shape_of(cells), len(cells), float(x), float(y))
        )
    return found


def cell_of(x: float, y: float) -> tuple[int, int]:
    return min(2, int(x * 3)), min(2, int(y * 3))


def judge_group(group: Group, found: list[Region]) -> dict[str, bool]:
    mine = [region for region in found if region.colour == group.colour]
    if not mine:
        return {"colour": False, "position": False, "count": False, "shape": False}
    area = sum(region.area for region in mine)
    x = sum(region.x * region.area for region in mine) / area
    y = sum(region.y * region.area for region in mine) / area
    shapes = [region.shape for region in mine]
    return {
        "colour": True,
        "position": cell_of(x, y) == POSITIONS[group.position],
        "count": len(mine) == group.count,
        "shape": max(set(shapes), key=shapes.count) == group.shape,
    }


def judge(image: Image.Image, request: Request | str) -> dict[str, bool]:
    """What the image gets right of the request: one boolean per attribute the request names."""
    if isinstance(request, str):
        request = parse(request)
    if request.background == "scene":
        return {"scene": scene_of(image) == request.scene}
    verdict: dict[str, bool] = {}
    if request.background == "solid":
        verdict["background"] = background_colour(as_array(image)) == request.colours[0]
    found = regions(image)
    results = [judge_group(group, found) for group in request.groups]
    for attribute in ("colour", "position", "count", "shape"):
        if results:
            verdict[attribute] = all(result[attribute] for result in results)
    return verdict


def request_of(picture: Picture) -> Request:
    return Request(
        background=picture.background, colours=picture.colours, groups=picture.groups, scene=picture.scene
    )


SCENE_CLASSES = (*SCENES, "")
FEATURE_SIDE = 16


def scene_features(image: Image.Image) -> np.ndarray:
    small = image.convert("RGB").resize((FEATURE_SIDE, FEATURE_SIDE), Image.Resampling.BOX)
    return np.concatenate([np.asarray(small, dtype=np.float32).ravel() / 255.0, [1.0]])


@functools.cache
def scene_weights() -> np.ndarray:
    """Softmax regression on blurred renders of each scene and of object pictures (seeded)."""
    rng = random.Random(1234)
    features: list[np.ndarray] = []
    labels: list[int] = []
    while len(features) < 1800:
        picture = sample_picture(rng, held_out=True)
        image = render(picture).filter(ImageFilter.GaussianBlur(rng.choice((0, 1, 2, 4))))
        features.append(scene_features(image))
        labels.append(SCENE_CLASSES.index(picture.scene))
    x, y = np.array(features), np.array(labels)
    weights = np.zeros((x.shape[1], len(SCENE_CLASSES)))
    onehot = np.eye(len(SCENE_CLASSES))[y]
    for _ in range(400):
        logits = x @ weights
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        weights -= 0.5 * (x.T @ (probabilities - onehot) / len(x) + 1e-4 * weights)
    return weights


def scene_of(image: Image.Image) -> str:
    return SCENE_CLASSES[int((scene_features(image) @ scene_weights()).argmax())]
