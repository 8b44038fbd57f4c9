"""The queue under load: submissions through the API, dispatcher releases, fairness of completion.

    .venv/bin/python bench/queue.py [--jobs 10000] [--users 100] [--web 2] [--window 2000]

Uses PostgreSQL and Redis (DATABASE_URL / REDIS_URL; defaults: this machine's servers, database
`atelier_bench`, Redis db 9 — both emptied first) and a model of the "noop" family, so the worker
does trivial work and the queue is what is measured.

1. Submissions: `--jobs` POST /api/v1/generations from `--users` users through the HTTP tier we
   ship (gunicorn with config/gunicorn.py, `--web` worker processes, production settings:
   DJANGO_DEBUG=0, persistent database connections, the `X-Forwarded-Proto` of a TLS proxy),
   64 requests in flight; no worker runs, so 2 per user are queued and the rest pending.
2. Fairness: one real gpu_worker drains the queue with each user capped at 2 jobs in flight; Jain's
   index over the users' shares of the first `--window` completions (1.0 = perfectly even).
3. Releases: the worker stops, the caps are lifted, and one dispatcher sweep moves every pending
   job into RQ; jobs released per second.

`--submissions-only` stops after step 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where its name would shadow the
# standard library's `queue` module: put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse
import asyncio
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import UTC, datetime

from scripts.private_redis import free_port

NOOP_MODEL = '[{"name": "noop", "path": "-", "pool": "bench", "family": "noop", "max_side": 64}]'


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--web", type=int, default=2)
    parser.add_argument("--window", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="profile the dispatcher sweep")
    parser.add_argument("--submissions-only", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="atelier-queue-bench-"))
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/atelier_bench")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
    env.update(
        ATELIER_MODELS=NOOP_MODEL,
        MEDIA_ROOT=str(work / "media"),
        DJANGO_SETTINGS_MODULE="config.settings",
        ATELIER_PROGRESS_INTERVAL="5",
        # As in production (docker-compose.yml, service web).
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_POOL_MAX="0",
        DATABASE_CONN_MAX_AGE="600",
    )
    os.environ.update(env)
    create_database(env["DATABASE_URL"])
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django

    django.setup()
    keys = prepare(args.users)

    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "-b", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**env, "WEB_CONCURRENCY": str(args.web)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        wait_up(port)
        submitted, seconds = asyncio.run(submit_all(port, keys, args.jobs, args.concurrency))
        rate = submitted / seconds
        print(
            f"submissions: {submitted} in {seconds:.1f} s = {rate:.0f} req/s through {args.web} web processes"
        )
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average {os.getloadavg()}")
        if args.submissions_only:
            return

        worker = subprocess.Popen(
            [sys.executable, "manage.py", "gpu_worker", "--pools", "bench"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        jain, drained, drain_seconds = fairness(args.window)
        print(f"fairness: Jain's index {jain:.3f} over the first {args.window} completions")
        print(f"worker throughput: {drained / drain_seconds:.0f} trivial jobs/s")
        worker.terminate()
        worker.wait()
        worker = None

        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            released, release_seconds = profiler.runcall(release_everything)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        else:
            released, release_seconds = release_everything()
        print(
            f"dispatcher: released {released} pending jobs in {release_seconds:.2f} s = "
            f"{released / release_seconds:.0f} jobs/s"
        )
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        )
    finally:
        for process in [web, *([worker] if worker else [])]:
            process.terminate()
            process.wait()


def create_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    base, _, name = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def prepare(users: int, *, prefix: str = "bench-", max_concurrent: int = 2) -> list[str]:
    """An empty queue, `users` funded accounts with API keys, and the default plan's caps."""
    from django.conf import settings

    from accounts.models import User
    from accounts.services import api_key_create
    from billing.credits import account_for, plan_by_slug
    from billing.models import BillingAccount, CreditEntry, Plan
    from core.redis import redis_client
    from generations.models import Generation

    redis_client().flushdb()
    CreditEntry.objects.all().delete()
    Generation.objects.all().delete()
    BillingAccount.objects.all().delete()
    User.objects.filter(username__startswith=prefix).delete()
    plan = plan_by_slug(settings.ATELIER_DEFAULT_PLAN)
    Plan.objects.filter(pk=plan.pk).update(
        max_concurrent=max_concurrent, max_pending=30_000, api_rate_per_minute=1_000_000
    )
    keys = []
    for index in range(users):
        user = User.objects.create_user(f"{prefix}{index}")
        account = account_for(user)
        BillingAccount.objects.filter(pk=account.pk).update(balance=10**12)
        keys.append(api_key_create(user=user)[1])
    return keys


def wait_up(port: int) -> None:
    import requests

    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2, headers=PROXIED)
            return
        except requests.RequestException:  # not listening yet, or still loading Django
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# What the TLS proxy in front of the web tier adds (DJANGO_DEBUG=0 redirects plain HTTP).
PROXIED = {"X-Forwarded-Proto": "https"}


async def submit_all(port: int, keys: list[str], jobs: int, concurrency: int) -> tuple[int, float]:
    """``jobs`` POSTs over ``concurrency`` kept-alive connections. The client is a few lines of
    HTTP/1.1 on asyncio streams rather than aiohttp: it shares the two cores with the server, and
    aiohttp spent 0.5 ms of CPU per request, a tenth of what the server spends."""
    body = json.dumps({"prompt": "bench", "model": "noop", "width": 64, "height": 64, "steps": 1}).encode()
    counter = iter(range(jobs))
    failures: list[str] = []

    def request(key: str) -> bytes:
        head = (
            f"POST /api/v1/generations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"X-Forwarded-Proto: {PROXIED['X-Forwarded-Proto']}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def client() -> int:
        done = 0
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index in counter:
                writer.write(request(keys[index % len(keys)]))
                lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                status = int(lines[0].split()[1])
                headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if b": " in line)
                answer = await reader.readexactly(int(headers[b"content-length"]))
                if status != 202:
                    failures.append(f"{status} {answer.decode(errors='replace')}")
                done += 1
                if headers.get(b"connection") == b"close":
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()
        return done

    start = time.perf_counter()
    results = await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} submissions failed, e.g. {failures[0]}")
    return sum(results), seconds


def fairness(window: int) -> tuple[float, int, float]:
    from generations.models import Generation

    start = time.perf_counter()
    while Generation.objects.filter(status="succeeded").count() < window:
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    done = list(
        Generation.objects.filter(status="succeeded")
        .order_by("finished_at")
        .values_list("user_id", flat=True)
    )
    first = done[:window]
    users = Generation.objects.values("user_id").distinct().count()
    shares = [first.count(user) for user in set(Generation.objects.values_list("user_id", flat=True))]
    shares += [0] * (users - len(shares))
    jain = sum(shares) ** 2 / (len(shares) * sum(s * s for s in shares))
    return jain, len(done), seconds


def release_everything() -> tuple[int, float]:
    from django.conf import settings

    from billing.models import Plan
    from generations.scheduling import release_all_pending

    Plan.objects.filter(slug=settings.ATELIER_DEFAULT_PLAN).update(max_concurrent=30_000)
    start = time.perf_counter()
    released = release_all_pending()
    return released, time.perf_counter() - start


if __name__ == "__main__":
    main()
