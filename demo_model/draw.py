"""Renders a `Picture` with Pillow: flat colours, so a judge can read it back from pixels."""

from __future__ import annotations

import math
import random

from PIL import Image, ImageDraw

from demo_model.world import COLOURS, POSITIONS, SIZES, Group, Picture

RGB = tuple[int, int, int]
NAVY: RGB = (15, 20, 60)
SKY: RGB = (140, 195, 240)
SEA: RGB = (30, 70, 160)
GRASS: RGB = (60, 160, 60)
HORIZON = 0.6
GROUND = 0.68


def render(picture: Picture, size: int = 256) -> Image.Image:
    rng = random.Random(picture.seed)
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    if picture.background == "scene":
        draw_scene(draw, picture, size, rng)
        return image
    draw_background(draw, picture, size, rng)
    for group in picture.groups:
        for x, y, side in group_layout(group, size, rng):
            draw_shape(draw, group.shape, x, y, side, COLOURS[group.colour])
    return image


def vertical_gradient(draw: ImageDraw.ImageDraw, top: RGB, bottom: RGB, y0: int, y1: int, width: int) -> None:
    span = max(1, y1 - y0 - 1)
    for y in range(y0, y1):
        t = (y - y0) / span
        colour = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=colour)


def draw_stars(draw: ImageDraw.ImageDraw, rng: random.Random, size: int, bottom: float, count: int) -> None:
    for _ in range(count):
        x, y = rng.uniform(0, size), rng.uniform(0, size * bottom)
        r = rng.choice((0.6, 0.9, 1.3)) * size / 256
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(235, 235, 210))


def draw_background(draw: ImageDraw.ImageDraw, picture: Picture, size: int, rng: random.Random) -> None:
    kind = picture.background
    if kind == "solid":
        draw.rectangle([0, 0, size, size], fill=COLOURS[picture.colours[0]])
    elif kind == "gradient":
        vertical_gradient(draw, COLOURS[picture.colours[0]], COLOURS[picture.colours[1]], 0, size, size)
    elif kind == "night sky":
        draw.rectangle([0, 0, size, size], fill=NAVY)
        draw_stars(draw, rng, size, 1.0, 40)
    elif kind == "sea":
        vertical_gradient(draw, SKY, (200, 225, 245), 0, int(size * HORIZON), size)
        draw.rectangle([0, int(size * HORIZON), size, size], fill=SEA)
    elif kind == "grass":
        vertical_gradient(draw, SKY, (200, 225, 245), 0, int(size * GROUND), size)
        draw.rectangle([0, int(size * GROUND), size, size], fill=GRASS)


def group_layout(group: Group, size: int, rng: random.Random) -> list[tuple[float, float, float]]:
    """Centre and side of each object of a group, kept inside the picture."""
    column, row = POSITIONS[group.position]
    side = SIZES[group.size] * size * rng.uniform(0.9, 1.1)
    cx = (0.22 + 0.28 * column) * size + rng.uniform(-0.03, 0.03) * size
    cy = (0.22 + 0.28 * row) * size + rng.uniform(-0.03, 0.03) * size
    gap = side * 1.25
    if group.count == 1:
        offsets = [(0.0, 0.0)]
    elif group.count == 2:
        offsets = (
            [(-gap / 2, 0.0), (gap / 2, 0.0)] if rng.random() < 0.6 else [(0.0, -gap / 2), (0.0, gap / 2)]
        )
    else:
        offsets = [(-gap / 2, gap * 0.29), (gap / 2, gap * 0.29), (0.0, -gap * 0.58)]
    margin = side / 2 + 2
    spread_x = max(abs(dx) for dx, _ in offsets)
    spread_y = max(abs(dy) for _, dy in offsets)
    cx = min(max(cx, margin + spread_x), size - margin - spread_x)
    cy = min(max(cy, margin + spread_y), size - margin - spread_y)
    return [(cx + dx, cy + dy, side) for dx, dy in offsets]


def polygon(points: list[tuple[float, float]], x: float, y: float, r: float) -> list[tuple[float, float]]:
    return [(x + px * r, y + py * r) for px, py in points]


def star_points(inner: float = 0.45) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        radius = 1.0 if i % 2 == 0 else inner
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((radius * math.cos(angle), radius * math.sin(angle) + 0.1))
    return points


def heart_points() -> list[tuple[float, float]]:
    points = []
    for i in range(48):
        t = 2 * math.pi * i / 48
        px = 16 * math.sin(t) ** 3
        py = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        points.append((px / 17, (py + 2.5) / 17))
    return points


STAR = star_points()
HEART = heart_points()
TRIANGLE = [(0.0, -1.0), (1.0, 0.8), (-1.0, 0.8)]
DIAMOND = [(0.0, -1.0), (0.75, 0.0), (0.0, 1.0), (-0.75, 0.0)]


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, side: float, colour: RGB) -> None:
    r = side / 2
    box = [x - r, y - r, x + r, y + r]
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        s = r * 0.88
        draw.rectangle([x - s, y - s, x + s, y + s], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, round(r * 0.38)))
    elif shape == "cross":
        arm = r * 0.34
        draw.rectangle([x - r, y - arm, x + r, y + arm], fill=colour)
        draw.rectangle([x - arm, y - r, x + arm, y + r], fill=colour)
    else:
        points = {"triangle": TRIANGLE, "star": STAR, "heart": HEART, "diamond": DIAMOND}[shape]
        draw.polygon(polygon(points, x, y, r), fill=colour)


def draw_scene(draw: ImageDraw.ImageDraw, picture: Picture, size: int, rng: random.Random) -> None:
    s = size
    if picture.scene == "sunset over the sea":
        horizon = s * rng.uniform(0.55, 0.65)
        vertical_gradient(draw, (120, 40, 110), (250, 150, 50), 0, int(horizon), s)
        sun_x, sun_r = rng.uniform(0.3, 0.7) * s, rng.uniform(0.1, 0.16) * s
        draw.ellipse([sun_x - sun_r, horizon - sun_r, sun_x + sun_r, horizon + sun_r], fill=(250, 200, 60))
        draw.rectangle([0, int(horizon), s, s], fill=(25, 45, 110))
        for i in range(5):
            y = horizon + (i + 1) * (s - horizon) / 7
            half = sun_r * (1.0 - i * 0.15)
            draw.line([(sun_x - half, y), (sun_x + half, y)], fill=(230, 150, 60), width=max(1, s // 90))
    elif picture.scene == "moon in a night sky":
        draw.rectangle([0, 0, s, s], fill=NAVY)
        draw_stars(draw, rng, s, 1.0, 50)
        mx, my, mr = rng.uniform(0.25, 0.75) * s, rng.uniform(0.2, 0.45) * s, rng.uniform(0.09, 0.14) * s
        draw.ellipse([mx - mr, my - mr, mx + mr, my + mr], fill=(240, 235, 200))
        if rng.random() < 0.5:  # a crescent
            draw.ellipse([mx - mr * 0.5, my - mr * 1.1, mx + mr * 1.4, my + mr * 0.9], fill=NAVY)
        hill = [(0, s), (0, s * 0.85), (s * 0.35, s * 0.8), (s * 0.7, s * 0.88), (s, s * 0.82), (s, s)]
        draw.polygon(hill, fill=(10, 30, 25))
    elif picture.scene == "house with a tree":
        draw_house_scene(draw, picture.variant, s, rng)
    elif picture.scene == "mountains":
        draw_mountains(draw, picture.variant, s, rng)
    elif picture.scene == "lighthouse":
        draw_lighthouse(draw, picture.variant, s, rng)


def draw_house_scene(draw: ImageDraw.ImageDraw, variant: str, s: int, rng: random.Random) -> None:
    ground = s * GROUND
    vertical_gradient(draw, SKY, (200, 225, 245), 0, int(ground), s)
    draw.rectangle([0, int(ground), s, s], fill=GRASS)
    house_left = rng.random() < 0.5
    hx = (rng.uniform(0.28, 0.36) if house_left else rng.uniform(0.64, 0.72)) * s
    tx = (rng.uniform(0.68, 0.78) if house_left else rng.uniform(0.22, 0.32)) * s
    w = rng.uniform(0.26, 0.32) * s
    body = COLOURS[variant] if variant in COLOURS else COLOURS["red"]
    top = ground - w * 0.8
    draw.rectangle([hx - w / 2, top, hx + w / 2, ground + s * 0.04], fill=body)
    roof = (120, 40, 30) if variant != "red" else (90, 50, 40)
    draw.polygon([(hx - w * 0.62, top), (hx, top - w * 0.55), (hx + w * 0.62, top)], fill=roof)
    draw.rectangle([hx - w * 0.1, ground - w * 0.35, hx + w * 0.1, ground + s * 0.04], fill=(70, 40, 20))
    trunk_w, crown = s * 0.045, rng.uniform(0.11, 0.15) * s
    draw.rectangle(
        [tx - trunk_w / 2, ground - s * 0.2, tx + trunk_w / 2, ground + s * 0.04], fill=(110, 65, 30)
    )
    cy = ground - s * 0.2 - crown * 0.6
    draw.ellipse([tx - crown, cy - crown, tx + crown, cy + crown], fill=(30, 120, 45))


def draw_mountains(draw: ImageDraw.ImageDraw, variant: str, s: int, rng: random.Random) -> None:
    vertical_gradient(draw, (90, 150, 225), (190, 215, 240), 0, s, s)
    base = s * rng.uniform(0.78, 0.86)
    peaks = rng.randint(2, 4)
    for i in range(peaks):
        px = s * (i + rng.uniform(0.3, 0.7)) / peaks
        height = s * rng.uniform(0.35, 0.6)
        half = s * rng.uniform(0.25, 0.4)
        top = base - height
        grey = rng.randint(95, 130)
        draw.polygon([(px - half, base), (px, top), (px + half, base)], fill=(grey, grey - 5, grey + 10))
        cap = 0.45 if variant == "snowy" else 0.25
        draw.polygon(
            [(px - half * cap, top + height * cap), (px, top), (px + half * cap, top + height * cap)],
            fill=(245, 245, 250),
        )
    draw.rectangle([0, int(base), s, s], fill=(50, 120, 50))


def draw_lighthouse(draw: ImageDraw.ImageDraw, variant: str, s: int, rng: random.Random) -> None:
    horizon = s * 0.66
    skies = {
        "day": (SKY, (205, 228, 245)),
        "dusk": ((70, 40, 110), (245, 140, 80)),
        "night": (NAVY, (40, 50, 100)),
    }
    top, bottom = skies.get(variant, skies["day"])
    vertical_gradient(draw, top, bottom, 0, int(horizon), s)
    if variant == "night":
        draw_stars(draw, rng, s, HORIZON, 30)
    draw.rectangle([0, int(horizon), s, s], fill=SEA if variant == "day" else (20, 40, 90))
    lx = s * rng.uniform(0.3, 0.7)
    draw.ellipse([lx - s * 0.2, horizon - s * 0.05, lx + s * 0.2, horizon + s * 0.12], fill=(80, 70, 60))
    base_w, top_w, height = s * 0.13, s * 0.08, s * 0.45
    bottom_y, top_y = horizon, horizon - height
    for i in range(4):
        y0 = bottom_y - height * i / 4
        y1 = bottom_y - height * (i + 1) / 4
        w0 = base_w + (top_w - base_w) * i / 4
        w1 = base_w + (top_w - base_w) * (i + 1) / 4
        colour = (210, 40, 40) if i % 2 == 0 else (245, 245, 245)
        draw.polygon(
            [(lx - w0 / 2, y0), (lx + w0 / 2, y0), (lx + w1 / 2, y1), (lx - w1 / 2, y1)], fill=colour
        )
    draw.rectangle([lx - top_w * 0.6, top_y - s * 0.06, lx + top_w * 0.6, top_y], fill=(250, 220, 90))
    draw.polygon(
        [(lx - top_w * 0.8, top_y - s * 0.06), (lx, top_y - s * 0.12), (lx + top_w * 0.8, top_y - s * 0.06)],
        fill=(40, 40, 40),
    )
    if variant != "day":
        draw.polygon(
            [(lx, top_y - s * 0.03), (lx + s * 0.45, top_y - s * 0.1), (lx + s * 0.45, top_y + s * 0.04)],
            fill=(250, 235, 150),
        )
