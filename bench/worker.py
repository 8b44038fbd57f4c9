"""The GPU worker against a plain diffusers loop, side by side in one run.

    .venv/bin/python bench/worker.py                                  # CPU, random-weight tiny model
    .venv/bin/python bench/worker.py --model demo --size 256          # CPU, the built-in demo model
    python3 bench/worker.py --device cuda --model sd15 --batches 1,4,8   # a GPU, SD 1.5 shapes

Baseline: `StableDiffusionPipeline` called in a plain loop in this process, one image per call,
each saved as PNG + WebP like the worker saves them. Subject: the real `gpu_worker` process (RQ,
SQLite, Redis, progress events with previews, storage, exactly-once finish), started once per
batch limit; all jobs are queued at once, so with a limit above 1 it forms dynamic batches.
Prints images/s for each, the ratio worker/loop at batch 1, the batching gain over batch 1, the
mean per-job phase split the worker recorded (queue wait / load / denoise / save), model load
times from disk and from RAM, and on CUDA the fraction of the GPU's peak FLOP/s achieved.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/, whose queue.py would shadow the standard library's queue

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from bench.scratch import build_model, scratch_env  # noqa: E402
from scripts.private_redis import free_port, start_redis  # noqa: E402

PROMPTS = ["a lighthouse at dusk", "a red fox in snow", "an old city street at night", "a bowl of fruit"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=("tiny", "demo", "sd15"), default="tiny")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=8, help="images per measured run")
    parser.add_argument("--batches", default="1,4", help="worker batch limits to measure")
    parser.add_argument("--oom", action="store_true", help="CUDA: force the out-of-memory ladder")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    work = Path(tempfile.mkdtemp(prefix="atelier-bench-worker-"))
    redis_port = free_port()
    redis = start_redis(redis_port, work / "redis", persist=False)
    model_dir = work / "models" / args.model
    env = scratch_env(work, redis_port, ATELIER_MODELS=models_setting(model_dir, max_batch=max(batches)))
    os.environ.update(env)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        results["build"] = build_model(args, model_dir)
        import django

        django.setup()
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"built: {results['build']}", flush=True)
        results["loads"] = load_times(args, model_dir)
        print(f"loads: {results['loads']}", flush=True)
        results["loop"] = plain_loop(args, model_dir, batches)
        print(f"loop: {results['loop']}", flush=True)
        results["worker"] = {}
        for b in batches:
            results["worker"][b] = worker_run(args, env, model_dir, b)
            print(f"worker {b}: {results['worker'][b]}", flush=True)
        if args.device.startswith("cuda"):
            results["flops"] = flop_fraction(args, model_dir, results)
            if args.oom:
                results["oom"] = oom_ladder(args, model_dir)
    finally:
        redis.terminate()
        redis.wait()
    report(args, batches, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


def models_setting(model_dir: Path, *, max_batch: int) -> str:
    spec = {
        "name": "bench",
        "path": str(model_dir),
        "pool": "bench",
        "max_side": 1024,
        "max_batch": max_batch,
    }
    return json.dumps([spec])


def dtype_for(device: str) -> Any:
    import torch

    return torch.float32 if device == "cpu" else torch.float16


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load_times(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """From disk (after dropping the page cache where allowed) and from RAM (a warm -> hot swap)."""
    from gpu_worker.cache import ModelCache

    dropped = drop_page_cache()
    cache = ModelCache(device=args.device, max_models=1, max_warm=1, dtype=dtype_for(args.device))
    cache.get(str(model_dir))
    synchronize(args.device)
    disk = cache.events[-1].seconds
    cache.get(str(model_dir)).txt2img.to("cpu")  # what a demotion to the warm tier does
    synchronize(args.device)
    started = time.perf_counter()
    cache.get(str(model_dir)).txt2img.to(args.device)
    synchronize(args.device)
    ram = time.perf_counter() - started
    cache.clear()
    return {"disk_seconds": round(disk, 3), "page_cache_dropped": dropped, "ram_seconds": round(ram, 3)}


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def plain_loop(args: argparse.Namespace, model_dir: Path, batches: list[int]) -> dict[int, Any]:
    import torch
    from diffusers import StableDiffusionPipeline

    from generations.storage import save_content
    from generations.thumbnails import webp_thumbnail
    from gpu_worker.encoders import png_with_parameters

    pipe: Any = StableDiffusionPipeline.from_pretrained(
        str(model_dir), torch_dtype=dtype_for(args.device), safety_checker=None, requires_safety_checker=False
    ).to(args.device)
    pipe.set_progress_bar_config(disable=True)

    def run(count: int, per_call: int, seed: int) -> float:
        synchronize(args.device)
        started = time.perf_counter()
        for call in range(count // per_call):
            seeds = [seed + call * per_call + i for i in range(per_call)]
            images = pipe(
                prompt=[PROMPTS[s % len(PROMPTS)] for s in seeds],
                width=args.size,
                height=args.size,
                num_inference_steps=args.steps,
                guidance_scale=7.0,
                generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
            ).images
            for s, image in zip(seeds, images, strict=True):
                save_content("bench-loop", png_with_parameters(image, {"seed": s}), "png")
                save_content("bench-loop-thumbs", webp_thumbnail(image), "webp")
        synchronize(args.device)
        return time.perf_counter() - started

    run(2, 1, 0)  # warm-up
    results = {}
    for per_call in batches:
        count = args.images - args.images % per_call
        seconds = run(count, per_call, 1000 * per_call)
        results[per_call] = {"images": count, "seconds": round(seconds, 3), "images_per_s": count / seconds}
    pipe = None  # let the worker have the device memory
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return results


def worker_run(
    args: argparse.Namespace, env: dict[str, str], model_dir: Path, max_batch: int
) -> dict[str, Any]:
    from django.db.models import Avg

    from accounts.models import User
    from generations import queues
    from generations.models import Generation, GenerationStatus

    worker_env = {**env, "ATELIER_MODELS": models_setting(model_dir, max_batch=max_batch)}
    log = open(Path(env["ATELIER_DATA_DIR"]) / f"worker-{max_batch}.log", "w+")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "gpu_worker", "--pools", "bench", "--device", args.device],
        cwd=ROOT,
        env=worker_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    user, _ = User.objects.get_or_create(username="bench")

    def submit(count: int, seed: int) -> list[Generation]:
        rows = [
            Generation(
                user=user,
                model_name="bench",
                pool="bench",
                lane="standard",
                status=GenerationStatus.QUEUED,
                prompt=PROMPTS[i % len(PROMPTS)],
                width=args.size,
                height=args.size,
                steps=args.steps,
                guidance=7.0,
                seed=seed + i,
            )
            for i in range(count)
        ]
        Generation.objects.bulk_create(rows)
        queues.enqueue_many(rows)
        return rows

    def wait(rows: list[Generation]) -> None:
        ids = [row.id for row in rows]
        while Generation.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists():
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {log.name}")
            time.sleep(0.01)
        failed = Generation.objects.filter(pk__in=ids).exclude(status="succeeded").first()
        if failed is not None:
            raise RuntimeError(f"generation {failed.status}: {failed.error_code} {failed.error_message}")

    try:
        wait(submit(2, 1))  # warm-up; the first call also waits for the worker to load the model
        rows = submit(args.images, 10_000 * max_batch)
        started = time.perf_counter()
        wait(rows)
        seconds = time.perf_counter() - started
        done = Generation.objects.filter(pk__in=[r.id for r in rows])
        timings = [g.timings for g in done]
        split = {
            phase: round(sum(float(t.get(phase) or 0) for t in timings) / len(timings), 4)
            for phase in ("queue_wait", "load", "denoise", "save")
        }
        mean_batch = done.aggregate(mean=Avg("batch_size"))["mean"]
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    log.seek(0)
    loaded = [line.strip() for line in log if line.startswith("loaded ")]
    return {
        "images": args.images,
        "seconds": round(seconds, 3),
        "images_per_s": args.images / seconds,
        "mean_batch": mean_batch,
        "phases": split,
        "worker_load": loaded,
    }


def flop_fraction(args: argparse.Namespace, model_dir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """FLOPs of one image (UNet x steps with classifier-free guidance, text encoder, VAE decode),
    counted by torch's FlopCounterMode, times the measured images/s, over a measured fp16 matmul peak."""
    import torch
    from diffusers import StableDiffusionPipeline
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    pipe: Any = StableDiffusionPipeline.from_pretrained(
        str(model_dir), torch_dtype=torch.float16, safety_checker=None, requires_safety_checker=False
    ).to(args.device)
    side = args.size // 8
    latents = torch.randn(2, 4, side, side, device=args.device, dtype=torch.float16)
    text = torch.randn(2, 77, 768, device=args.device, dtype=torch.float16)
    ids = torch.zeros(1, 77, dtype=torch.long, device=args.device)
    # The math attention backend decomposes into matmuls that the counter knows; counting only.
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as unet_count:
            pipe.unet(latents, 500, encoder_hidden_states=text)
        with FlopCounterMode(display=False) as vae_count:
            pipe.vae.decode(latents[:1] / 0.18215)
        with FlopCounterMode(display=False) as text_count:
            pipe.text_encoder(ids)
    per_image = unet_count.get_total_flops() * args.steps + vae_count.get_total_flops()
    per_image += 2 * text_count.get_total_flops()
    a = torch.randn(8192, 8192, device=args.device, dtype=torch.float16)
    b = torch.randn(8192, 8192, device=args.device, dtype=torch.float16)
    for _ in range(3):
        a @ b
    synchronize(args.device)
    started = time.perf_counter()
    for _ in range(20):
        a @ b
    synchronize(args.device)
    peak = 20 * 2 * 8192**3 / (time.perf_counter() - started)
    out = {"flops_per_image": per_image, "matmul_peak_flops": peak}
    for name, rate in [("loop_1", results["loop"][1]["images_per_s"])] + [
        (f"worker_{b}", r["images_per_s"]) for b, r in results["worker"].items()
    ]:
        out[name] = {"achieved_flops": rate * per_image, "fraction_of_peak": rate * per_image / peak}
    return out


def oom_ladder(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """A real CUDA out-of-memory: cap the allocator, then ask for a batch that cannot fit."""
    import gc

    import torch

    from gpu_worker.cache import ModelCache
    from gpu_worker.memory import MemoryBudget
    from gpu_worker.model import RenderSpec
    from gpu_worker.pipeline import render_batch

    gc.collect()
    torch.cuda.empty_cache()
    model = ModelCache(device=args.device).get(str(model_dir))
    outcomes: dict[str, Any] = {}
    for gib, images in ((None, 8), (6.0, 8), (2.6, 1)):
        if gib is not None:
            MemoryBudget(int(gib * 2**30)).apply(args.device)
        specs = [
            RenderSpec(prompt=f"wide {i}", width=1024, height=1024, steps=4, seeds=[i]) for i in range(images)
        ]
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            result = render_batch(model, specs)
            outcome: dict[str, Any] = {"memory_mode": result.memory_mode}
            outcome["images"] = sum(len(i or []) for i in result.images)
        except torch.OutOfMemoryError as exc:
            outcome = {"memory_mode": "failed", "error": str(exc)[:200]}
        outcome["seconds"] = round(time.perf_counter() - started, 2)
        outcome["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        outcomes[f"{images} images at 1024x1024, budget {gib or 'none'} GiB"] = outcome
        print(f"oom ladder: {images} images, budget {gib} GiB -> {outcome}", flush=True)
    return outcomes


def report(args: argparse.Namespace, batches: list[int], results: dict[str, Any]) -> None:
    import torch

    device = args.device
    if device.startswith("cuda"):
        device = f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    else:
        device = f"CPU, {os.cpu_count()} cores (torch {torch.__version__})"
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC   machine: {platform.machine()}, {device}")
    print(
        f"workload: {args.model}, {args.size}x{args.size}, {args.steps} steps, {args.images} images per run"
    )
    print(f"model build: {results['build']}\nmodel load: {results['loads']}")
    loop, worker = results["loop"], results["worker"]
    for b in batches:
        line = f"batch {b}: plain loop {loop[b]['images_per_s']:.3f} img/s ({loop[b]['seconds']} s)"
        w = worker[b]
        line += (
            f" | worker {w['images_per_s']:.3f} img/s ({w['seconds']} s, mean batch {w['mean_batch']:.2f})"
        )
        print(line)
        print(f"   worker phases (mean s/job): {w['phases']}  loads: {w['worker_load']}")
    ratio = worker[1]["images_per_s"] / loop[1]["images_per_s"]
    print(f"worker / plain loop at batch 1: {ratio:.3f}")
    for b in batches[1:]:
        print(f"dynamic batching gain at {b}: {worker[b]['images_per_s'] / worker[1]['images_per_s']:.2f}x")
    if "flops" in results:
        flops = results["flops"]
        print(
            f"FLOPs per image: {flops['flops_per_image'] / 1e12:.2f} T; fp16 matmul peak measured: "
            f"{flops['matmul_peak_flops'] / 1e12:.0f} TFLOP/s"
        )
        for key, value in flops.items():
            if isinstance(value, dict):
                print(
                    f"   {key}: {value['achieved_flops'] / 1e12:.1f} TFLOP/s = "
                    f"{value['fraction_of_peak']:.3f} of peak"
                )
    if "oom" in results:
        print(f"out-of-memory ladder: {results['oom']}")


if __name__ == "__main__":
    main()
