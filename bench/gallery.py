"""Explore's first page with 100,000 published images, against the same requests without the
gallery's indexes (dropped inside a transaction that is rolled back, so nothing changes).

PostgreSQL only (the numbers that matter are production's):

    DATABASE_URL=postgres://... .venv/bin/python bench/gallery.py [--images 100000] [--n 30]

Seeds `--images` published images from 1,000 members once (bulk_create; rerunning reuses them;
`--clean` removes them), then times GET /api/v1/explore through Django's test client — the whole
server side: middleware, DRF, the query, the page's resources — for each sort and a search, and
prints median and p95 per case, indexed and not, side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, whose queue.py would shadow the standard library's queue
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["ATELIER_ANON_RATE_PER_MINUTE"] = "100000000"  # measure the page, not the rate limiter

PREFIX = "bench-gallery-"
WORDS = [
    "fox",
    "lighthouse",
    "castle",
    "forest",
    "river",
    "mountain",
    "city",
    "night",
    "dusk",
    "dawn",
    "portrait",
    "robot",
    "dragon",
    "garden",
    "ocean",
    "desert",
    "snow",
    "rain",
    "neon",
    "cat",
    "dog",
    "owl",
    "ship",
    "train",
    "bridge",
    "tower",
    "market",
    "temple",
    "cyberpunk",
    "watercolor",
    "oil",
    "painting",
    "photograph",
    "anime",
    "pixel",
    "art",
    "cinematic",
    "misty",
    "golden",
    "hour",
]
GALLERY_INDEXES = ["explore_new", "explore_top", "explore_trending", "generation_prompt_search"]
CASES = [
    ("new", "sort=new"),
    ("top (week)", "sort=top&window=week"),
    ("trending", "sort=trending"),
    ("search 'lighthouse dusk'", "sort=new&q=lighthouse+dusk"),
]


def seed(count: int) -> None:
    from accounts.models import User
    from generations.models import ContentRating, Generation, GenerationStatus, Image

    have = Image.objects.filter(generation__user__username__startswith=PREFIX).count()
    if have >= count:
        print(f"reusing {have} seeded images")
        return
    clean()
    rng = random.Random(5)
    users = User.objects.bulk_create([User(username=f"{PREFIX}{i}") for i in range(1000)])
    now = datetime.now(UTC)
    started = time.perf_counter()
    batch = 5000
    for start in range(0, count, batch):
        generations, images = [], []
        for _ in range(min(batch, count - start)):
            created = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
            public = rng.random() > 0.05
            generation = Generation(
                user=rng.choice(users),
                status=GenerationStatus.SUCCEEDED,
                model_name="atelier-demo",
                pool="tiny",
                lane="standard",
                prompt=" ".join(rng.sample(WORDS, 6)),
                width=512,
                height=512,
                steps=20,
                guidance=7.0,
                seed=rng.randrange(2**32),
                is_public=public,
                created_at=created,
            )
            generations.append(generation)
            images.append(
                Image(
                    generation=generation,
                    index=0,
                    seed=generation.seed,
                    width=512,
                    height=512,
                    original=f"images/bench/{generation.id}.png",
                    thumbnail=f"thumbnails/bench/{generation.id}.webp",
                    sha256="0" * 64,
                    created_at=created,
                    like_count=int(rng.paretovariate(1.2)) - 1,
                    hidden=rng.random() < 0.01,
                    content_rating=ContentRating.MATURE if rng.random() < 0.03 else ContentRating.GENERAL,
                )
            )
        Generation.objects.bulk_create(generations)
        Image.objects.bulk_create(images)
    print(f"seeded {count} images in {time.perf_counter() - started:.1f} s")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE generations_generation; ANALYZE generations_image")


def clean() -> None:
    from accounts.models import User
    from generations.models import Generation, Image

    bench_users = User.objects.filter(username__startswith=PREFIX)
    Image.objects.filter(generation__user__in=bench_users)._raw_delete("default")
    Generation.objects.filter(user__in=bench_users)._raw_delete("default")
    bench_users.delete()


def timings(client: Any, query: str, n: int) -> tuple[float, float, int]:
    samples = []
    for i in range(n + 3):
        started = time.perf_counter()
        response = client.get("/api/v1/explore?" + query)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.content[:300]
        if i >= 3:  # the first few warm the caches
            samples.append(elapsed * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
    return statistics.median(samples), p95, len(response.json()["data"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--clean", action="store_true")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client

    if connection.vendor != "postgresql":
        sys.exit("bench/gallery.py measures PostgreSQL: set DATABASE_URL=postgres://...")
    call_command("migrate", verbosity=0)
    if args.clean:
        clean()
        print("removed the seeded images")
        return
    seed(args.images)
    client = Client(HTTP_HOST="localhost")
    indexed = {name: timings(client, query, args.n) for name, query in CASES}
    with transaction.atomic():
        with connection.cursor() as cursor:
            for index in GALLERY_INDEXES:
                cursor.execute(f"DROP INDEX {index}")
        unindexed = {name: timings(client, query, args.n) for name, query in CASES}
        transaction.set_rollback(True)

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    print(f"\n{when} · {platform.machine()}, {os.cpu_count()} cores · PostgreSQL {version}")
    print(f"{args.images} images, {args.n} requests per case, GET /api/v1/explore (first page, 24 images)\n")
    print("| case | indexed median | indexed p95 | without the indexes median | p95 | speed-up (median) |")
    print("|---|---|---|---|---|---|")
    for name, _ in CASES:
        (med, p95, rows), (base_med, base_p95, base_rows) = indexed[name], unindexed[name]
        assert rows == base_rows, (name, rows, base_rows)
        cells = [f"{med:.1f} ms", f"{p95:.1f} ms", f"{base_med:.1f} ms", f"{base_p95:.1f} ms"]
        print(f"| {name} | {' | '.join(cells)} | {base_med / med:.1f}x |")


if __name__ == "__main__":
    main()
