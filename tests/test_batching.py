"""Dynamic batching and the out-of-memory ladder, with the built-in model on the CPU and real Redis."""

from __future__ import annotations

import io
import json
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler
from django.test import Client
from PIL import Image as PILImage

from accounts.models import User
from core.model_catalog import ModelSpec
from generations import queues
from generations.models import Generation, GenerationStatus, Image, Upload
from generations.registry import default_model, get_model
from generations.samplers import SAMPLERS, samplers_for
from generations.services import upload_create
from generations.storage import delete_content, open_content
from gpu_worker.cache import ModelCache
from gpu_worker.memory import MemoryBudget, estimate_bytes
from gpu_worker.model import BatchStepCallback, LoadedModel, RenderSpec
from gpu_worker.pipeline import render, render_batch
from gpu_worker.runner import GenerationRunner
from gpu_worker.samplers import UnsupportedSampler, make_scheduler
from gpu_worker.tiny_families import build_family
from gpu_worker.tiny_model import ensure_tiny_model
from tests.factories import private_pool_model, queued_generation

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    # The random-weight tiny SD 1.5 (DPM++ 2M Karras, epsilon): these tests are about the worker's
    # batching and samplers, whose expectations were measured on it, not about the demo model.
    path = tmp_path_factory.mktemp("models") / "tiny-sd"
    ensure_tiny_model(path)
    return ModelCache().get(str(path))


@pytest.fixture
def runner() -> Iterator[GenerationRunner]:
    instance = GenerationRunner(name="batch-runner")
    yield instance
    instance.publisher.close()


@pytest.fixture(autouse=True)
def private_pool(settings: Any) -> ModelSpec:
    return private_pool_model(settings)


@pytest.fixture(autouse=True)
def empty_queues() -> None:
    client = queues.redis_client()
    for key in client.scan_iter(match="rq:queue:gen.*"):
        client.delete(key)
    client.delete(queues.job_metrics_key("tiny-private-pool"))
    client.delete(queues.MODEL_EVENTS_KEY)


def pixels(image: PILImage.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def spec(prompt: str, seeds: list[int], **fields: object) -> RenderSpec:
    values: dict[str, object] = {"width": 64, "height": 64, "steps": 3, "guidance": 5.0, **fields}
    return RenderSpec(prompt=prompt, seeds=seeds, **values)  # type: ignore[arg-type]


# The pipeline: a batch gives each job the images it would get alone


def test_batched_jobs_get_the_images_they_would_get_alone(model: LoadedModel) -> None:
    specs = [
        spec("a red boat", [11]),
        spec("a cat at night", [12, 13], negative_prompt="blurry"),
        spec("", [99]),
    ]

    batched = render_batch(model, specs)

    assert batched.memory_mode == "normal"
    for one, images in zip(specs, batched.images, strict=True):
        assert images is not None
        alone = render(model, one)
        assert len(images) == len(alone) == len(one.seeds)
        for mine, reference in zip(images, alone, strict=True):
            assert np.abs(pixels(mine) - pixels(reference)).max() <= 2
    # Different prompts and seeds really do give different pictures in one batch.
    first, second = batched.images[0], batched.images[1]
    assert first is not None and second is not None
    assert np.abs(pixels(first[0]) - pixels(second[0])).mean() > 1


def test_progress_reaches_each_job_with_its_own_latents(model: LoadedModel) -> None:
    specs = [spec("one", [1]), spec("two", [2, 3])]
    seen: dict[int, list[tuple[int, tuple[int, ...]]]] = {0: [], 1: []}

    def on_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> set[int]:
        for index, tensor in latents.items():
            seen[index].append((step, tuple(tensor.shape)))
        return set()

    render_batch(model, specs, on_step)

    assert [s for s, _ in seen[0]] == [1, 2, 3] == [s for s, _ in seen[1]]
    assert seen[0][0][1][0] == 1 and seen[1][0][1][0] == 2  # one latent per image of that job


def test_canceling_one_job_of_a_batch_leaves_the_others_running(model: LoadedModel) -> None:
    specs = [spec("keep", [1]), spec("stop", [2]), spec("keep too", [3])]

    result = render_batch(model, specs, lambda step, total, latents: {1} if step == 1 else set())

    assert result.images[1] is None
    assert result.images[0] is not None and result.images[2] is not None


def source_image(seed: int, size: int = 64) -> PILImage.Image:
    """A noisy picture of its own for each job: img2img outputs then differ visibly."""
    rng = np.random.default_rng(seed)
    return PILImage.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def square_mask(offset: int, size: int = 64) -> PILImage.Image:
    mask = PILImage.new("L", (size, size), 0)
    mask.paste(255, (offset, offset, offset + size // 2, offset + size // 2))
    return mask


def edit_specs(kind: str, sampler: str = "default", **fields: object) -> list[RenderSpec]:
    """Three jobs of `kind` with their own prompts, seeds, sources and (inpaint) masks."""
    specs = []
    for i, (prompt, seeds) in enumerate([("a red boat", [11]), ("a cat at night", [12, 13]), ("", [99])]):
        extra: dict[str, object] = {"sampler": sampler, "strength": 0.7, **fields}
        if kind != "txt2img":
            extra["init_image"] = source_image(i)
        if kind == "inpaint":
            extra["mask_image"] = square_mask(8 * i)
        specs.append(spec(prompt, seeds, steps=4, **extra))
    return specs


def assert_same_as_alone(model: LoadedModel, specs: list[RenderSpec], batched: list[Any]) -> None:
    for one, images in zip(specs, batched, strict=True):
        assert images is not None
        alone = render(model, one)
        assert len(images) == len(alone) == len(one.seeds)
        for mine, reference in zip(images, alone, strict=True):
            assert np.abs(pixels(mine) - pixels(reference)).max() <= 2


# Every sampler on txt2img; on img2img and inpainting the model's own, a stochastic one (fresh noise
# each step, drawn from each image's generator) and a multistep one (it keeps earlier steps).
KINDS_AND_SAMPLERS = [("txt2img", name) for name in SAMPLERS] + [
    (kind, name) for kind in ("img2img", "inpaint") for name in ("default", "euler_a", "dpmpp_2m")
]


@pytest.mark.parametrize(("kind", "sampler"), KINDS_AND_SAMPLERS)
def test_every_kind_and_sampler_gives_each_job_of_a_batch_its_images_alone(
    model: LoadedModel, kind: str, sampler: str
) -> None:
    specs = edit_specs(kind, sampler)

    batched = render_batch(model, specs)

    assert_same_as_alone(model, specs, batched.images)
    first, second = batched.images[0], batched.images[1]
    assert first is not None and second is not None
    assert np.abs(pixels(first[0]) - pixels(second[0])).mean() > 1


def test_each_inpaint_job_keeps_its_own_mask(model: LoadedModel) -> None:
    specs = edit_specs("inpaint")

    batched = render_batch(model, specs)

    for one, images in zip(specs, batched.images, strict=True):
        assert images is not None and one.init_image is not None and one.mask_image is not None
        keep = np.asarray(one.mask_image) == 0
        changed = np.abs(pixels(images[0]) - pixels(one.init_image)).max(axis=2)
        # Outside its own mask a job's picture stays close to its own source; inside it is repainted.
        assert changed[keep].mean() < changed[~keep].mean()


def test_a_sampler_changes_the_picture_and_leaves_the_models_own_scheduler_alone(model: LoadedModel) -> None:
    scheduler = model.txt2img.scheduler
    pictures = {name: render(model, spec("a lighthouse", [5], sampler=name))[0] for name in SAMPLERS}
    render(model, edit_specs("img2img", "euler_a")[0])
    render(model, edit_specs("inpaint", "ddim")[0])

    for name in ("euler", "euler_a", "ddim"):
        assert np.abs(pixels(pictures[name]) - pixels(pictures["default"])).mean() > 1, name
    # The built-in model's own scheduler is DPM++ 2M Karras: "default" is that sampler.
    assert np.abs(pixels(pictures["dpmpp_2m_karras"]) - pixels(pictures["default"])).max() <= 2
    # Every render stepped a scheduler of its own: the cached pipelines' one was never used.
    assert model.txt2img.scheduler is scheduler is model.img2img.scheduler is model.inpaint.scheduler
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert scheduler.num_inference_steps is None and scheduler.step_index is None


def test_samplers_keep_the_models_noise_settings_and_refuse_what_does_not_fit_flow_matching() -> None:
    v_prediction = DPMSolverMultistepScheduler(
        prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True
    )
    for name in samplers_for("sd2"):
        made = make_scheduler(v_prediction, name)
        assert made is not v_prediction
        assert made.config.prediction_type == "v_prediction", name
        assert made.config.timestep_spacing == "trailing", name
    assert type(make_scheduler(v_prediction, "ddim")).__name__ == "DDIMScheduler"
    assert make_scheduler(v_prediction, "ddim").config.clip_sample is False
    assert make_scheduler(v_prediction, "dpmpp_2m_karras").config.use_karras_sigmas is True

    flow = FlowMatchEulerDiscreteScheduler(shift=3.0)
    for name in samplers_for("sd3"):
        made = make_scheduler(flow, name)
        assert made.config.shift == 3.0 and type(made).__name__ == "FlowMatchEulerDiscreteScheduler"
    for name in set(SAMPLERS) - set(samplers_for("sd3")):
        with pytest.raises(UnsupportedSampler):
            make_scheduler(flow, name)


def test_jobs_that_cannot_share_a_denoising_loop_are_refused_as_one_batch(model: LoadedModel) -> None:
    txt2img, img2img = edit_specs("txt2img")[0], edit_specs("img2img")[0]
    with pytest.raises(ValueError, match="must share"):
        render_batch(model, [txt2img, img2img])
    with pytest.raises(ValueError, match="must share"):
        render_batch(model, [spec("a", [1]), spec("b", [2], sampler="ddim")])
    with pytest.raises(ValueError, match="must share"):
        render_batch(model, [img2img, edit_specs("img2img", strength=0.5)[1]])


# The out-of-memory ladder, forced with a small memory budget


def test_a_batch_over_budget_is_split(model: LoadedModel) -> None:
    specs = [spec(f"p{i}", [i]) for i in range(4)]
    two = estimate_bytes(model, specs[:2], "normal")
    assert estimate_bytes(model, specs, "normal") > two

    result = render_batch(model, specs, budget=MemoryBudget(two))

    assert result.memory_mode == "split"
    alone = [render(model, s)[0] for s in specs]
    for images, reference in zip(result.images, alone, strict=True):
        assert images is not None
        assert np.abs(pixels(images[0]) - pixels(reference)).max() <= 2


@pytest.mark.parametrize("kind", ["img2img", "inpaint"])
def test_an_image_to_image_batch_over_budget_is_split_and_each_job_keeps_its_images(
    model: LoadedModel, kind: str
) -> None:
    specs = edit_specs(kind, "euler_a")
    two = estimate_bytes(model, specs[1:2], "normal")  # the one job of two images

    result = render_batch(model, specs, budget=MemoryBudget(two))

    assert result.memory_mode == "split"
    assert_same_as_alone(model, specs, result.images)


def test_one_image_over_budget_runs_with_sliced_attention_and_a_tiled_vae(model: LoadedModel) -> None:
    big = spec("wide", [5], width=576, height=576, steps=2)
    normal, sliced = estimate_bytes(model, [big], "normal"), estimate_bytes(model, [big], "sliced")
    assert sliced < normal

    result = render_batch(model, [big], budget=MemoryBudget((normal + sliced) // 2))

    assert result.memory_mode == "sliced"
    assert result.images[0] is not None and result.images[0][0].size == (576, 576)
    # The model is left as it was: the next job runs without the savings.
    assert render_batch(model, [spec("after", [1])]).memory_mode == "normal"
    assert model.txt2img.vae.use_tiling is False


def test_a_batch_that_fits_nowhere_raises_out_of_memory(model: LoadedModel) -> None:
    with pytest.raises(torch.OutOfMemoryError):
        render_batch(model, [spec("x", [1])], budget=MemoryBudget(1024))


# The runner: compatible queued jobs join the batch


def queued(user: User, **fields: object) -> Generation:
    spec = get_model("tiny-private")
    assert spec is not None
    return queued_generation(user, steps=3, model_name=spec.name, pool=spec.pool, **fields)


def enqueue(*generations: Generation) -> None:
    queues.enqueue_many(list(generations))


def test_a_worker_batches_compatible_queued_jobs_and_reports_each(runner: GenerationRunner) -> None:
    user = User.objects.create(username="batcher")
    head = queued(user, prompt="head", n=2)
    mates = [queued(user, prompt=f"mate {i}", seed=100 + i) for i in range(3)]
    other_size = queued(user, prompt="wide", width=128)
    enqueue(*mates, other_size)

    assert runner.run_one(str(head.id)) == GenerationStatus.SUCCEEDED

    head.refresh_from_db()
    joined = [m for m in mates if Generation.objects.get(pk=m.pk).status == GenerationStatus.SUCCEEDED]
    # max_batch is 4 images: the head's 2 + the first 2 mates in queue order.
    assert [m.prompt for m in joined] == ["mate 0", "mate 1"]
    assert head.batch_size == 3 and head.memory_mode == "normal"
    for generation in [head, *joined]:
        generation.refresh_from_db()
        assert generation.batch_size == 3
        assert set(generation.timings) >= {"queue_wait", "load", "denoise", "save", "it_per_s"}
        assert generation.run_seconds is not None and generation.run_seconds > 0
        images = list(Image.objects.filter(generation=generation))
        assert [i.seed for i in images] == [generation.seed + k for k in range(generation.n)]
        stored = PILImage.open(io.BytesIO(open_content(images[0].original)))
        assert json.loads(stored.info["parameters"])["prompt"] == generation.prompt
    # What was not taken is still queued, still in RQ, for the next turn.
    assert Generation.objects.get(pk=mates[2].pk).status == GenerationStatus.QUEUED
    assert Generation.objects.get(pk=other_size.pk).status == GenerationStatus.QUEUED
    waiting = queues.redis_client().lrange(f"rq:queue:{head.queue_name}", 0, -1)
    assert [j.decode() for j in waiting] == [queues.job_id_for(mates[2]), queues.job_id_for(other_size)]
    metrics = queues.recent_job_metrics(head.pool)
    assert len(metrics) == 3 and {m["batch"] for m in metrics} == {3}


def test_a_batch_never_delays_a_higher_lane(runner: GenerationRunner) -> None:
    user = User.objects.create(username="lanes")
    head = queued(user, prompt="standard head")
    mate = queued(user, prompt="would fit")
    urgent = queued(user, prompt="urgent", lane="priority", width=128)
    enqueue(mate, urgent)

    runner.run_one(str(head.id))

    head.refresh_from_db()
    assert head.batch_size == 1
    assert Generation.objects.get(pk=mate.pk).status == GenerationStatus.QUEUED


def test_a_preempted_job_runs_alone_and_is_never_taken_as_a_mate(runner: GenerationRunner) -> None:
    """It may resume from a saved step (gpu_worker/resume.py) that mates would not share."""
    user = User.objects.create(username="preempted")
    resuming = queued(user, prompt="preempted head", preemptions=1)
    fresh = queued(user, prompt="would fit")
    enqueue(fresh)
    runner.run_one(str(resuming.id))
    assert Generation.objects.get(pk=resuming.pk).batch_size == 1
    assert Generation.objects.get(pk=fresh.pk).status == GenerationStatus.QUEUED

    head = queued(user, prompt="fresh head")
    preempted_mate = queued(user, prompt="preempted mate", preemptions=1)
    enqueue(preempted_mate)
    runner.run_one(str(head.id))
    assert Generation.objects.get(pk=preempted_mate.pk).status == GenerationStatus.QUEUED


def test_a_mate_canceled_mid_batch_ends_canceled_and_the_rest_succeed(runner: GenerationRunner) -> None:
    user = User.objects.create(username="canceler")
    head = queued(user, prompt="head")
    mate = queued(user, prompt="mate")
    enqueue(mate)
    flagged = {"done": False}
    original = runner.progress_callback

    def progress_callback(jobs: list[Generation]) -> BatchStepCallback:
        inner = original(jobs)

        def on_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> Collection[int]:
            if not flagged["done"]:  # the user cancels the mate once the batch is running
                queues.request_cancel(mate)
                flagged["done"] = True
            return inner(step, total, latents)

        return on_step

    runner.progress_callback = progress_callback  # type: ignore[method-assign]
    runner.run_one(str(head.id))

    head.refresh_from_db()
    mate.refresh_from_db()
    assert head.status == GenerationStatus.SUCCEEDED and head.batch_size == 2
    assert mate.status == GenerationStatus.CANCELED
    assert not Image.objects.filter(generation=mate).exists()


def uploaded(user: User, picture: PILImage.Image) -> Upload:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return upload_create(user=user, data=buffer.getvalue())


def edit_job(user: User, kind: str, index: int, **fields: object) -> Generation:
    """A queued img2img or inpaint job with a source (and mask) of its own."""
    values: dict[str, object] = {
        "kind": kind,
        "prompt": f"job {index}",
        "seed": 50 + index,
        "input_upload": uploaded(user, source_image(index)),
        "strength": 0.7,
        "sampler": "euler_a",
    }
    if kind == "inpaint":
        values["mask_upload"] = uploaded(user, square_mask(8 * (index % 4)))
    return queued(user, **{**values, **fields})


def recording_events(runner: GenerationRunner) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    events: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    publish = runner.publish

    def recording(generation: Generation, event_type: str, **extra: Any) -> None:
        events.setdefault(str(generation.id), []).append((event_type, extra))
        publish(generation, event_type, **extra)

    runner.publish = recording  # type: ignore[method-assign]
    return events


@pytest.mark.parametrize("kind", ["img2img", "inpaint"])
def test_a_worker_batches_image_to_image_jobs_each_with_its_own_source(
    runner: GenerationRunner, kind: str
) -> None:
    model = ModelCache().get(default_model().path)  # what the runner renders these jobs with
    user = User.objects.create(username=f"editor-{kind}")
    head = edit_job(user, kind, 0)
    mates = [edit_job(user, kind, 1), edit_job(user, kind, 2)]
    stopped = edit_job(user, kind, 3)
    apart = [
        edit_job(user, kind, 4, strength=0.5),
        edit_job(user, kind, 5, sampler="ddim"),
        queued(user, prompt="no source", sampler="euler_a"),
    ]
    enqueue(apart[0], mates[0], apart[1], stopped, apart[2], mates[1])
    events = recording_events(runner)
    original = runner.progress_callback

    def progress_callback(jobs: list[Generation]) -> BatchStepCallback:
        inner = original(jobs)

        def on_step(step: int, total: int, latents: dict[int, torch.Tensor]) -> Collection[int]:
            queues.request_cancel(stopped)  # its user cancels it once the batch runs
            return inner(step, total, latents)

        return on_step

    runner.progress_callback = progress_callback  # type: ignore[method-assign]
    assert runner.run_one(str(head.id)) == GenerationStatus.SUCCEEDED

    last_previews = []
    for job in [head, *mates]:
        job.refresh_from_db()
        assert (job.status, job.batch_size, job.kind, job.sampler) == ("succeeded", 4, kind, "euler_a")
        assert job.step == job.total_steps == 2  # 3 steps at strength 0.7
        progress = [extra for kind_, extra in events[str(job.id)] if kind_ == "generation.progress"]
        assert progress and all(p["preview"].startswith("data:image/jpeg;base64,") for p in progress)
        last_previews.append(progress[-1]["preview"])
        (image,) = Image.objects.filter(generation=job)
        stored = PILImage.open(io.BytesIO(open_content(image.original)))
        assert json.loads(stored.info["parameters"])["sampler"] == "euler_a"
        (alone,) = render(model, runner.render_spec(job))
        assert np.abs(pixels(stored) - pixels(alone)).max() <= 2
    assert len(set(last_previews)) == 3  # each job saw its own latents
    assert len({Image.objects.get(generation=job).sha256 for job in [head, *mates]}) == 3
    stopped.refresh_from_db()
    assert stopped.status == GenerationStatus.CANCELED and not Image.objects.filter(generation=stopped)
    # Another strength, another sampler, another kind: each waits for a batch of its own.
    assert {Generation.objects.get(pk=job.pk).status for job in apart} == {GenerationStatus.QUEUED}


def test_a_job_whose_source_is_gone_fails_alone_and_its_batch_still_runs(runner: GenerationRunner) -> None:
    user = User.objects.create(username="lost-source")
    head = edit_job(user, "img2img", 10)
    mate = edit_job(user, "img2img", 11)
    enqueue(mate)
    assert mate.input_upload is not None
    delete_content(mate.input_upload.file)

    runner.run_one(str(head.id))

    head.refresh_from_db()
    mate.refresh_from_db()
    assert (head.status, head.batch_size) == (GenerationStatus.SUCCEEDED, 2)
    assert (mate.status, mate.error_code) == (GenerationStatus.FAILED, "input_missing")
    assert Image.objects.filter(generation=head).count() == 1
    assert not Image.objects.filter(generation=mate).exists()


def test_a_flow_matching_model_runs_euler_and_fails_a_sampler_it_cannot_use(
    runner: GenerationRunner, settings: Any, tmp_path: Path
) -> None:
    build_family("sd3", tmp_path / "sd3")
    sd3 = private_pool_model(settings, name="tiny-sd3", path=str(tmp_path / "sd3"), family="sd3")
    user = User.objects.create(username="flow")
    fitting = queued_generation(user, model_name=sd3.name, pool=sd3.pool, sampler="euler")
    unfit = queued_generation(user, model_name=sd3.name, pool=sd3.pool, sampler="ddim")

    assert runner.run_one(str(fitting.id)) == GenerationStatus.SUCCEEDED
    assert runner.run_one(str(unfit.id)) == GenerationStatus.FAILED

    unfit.refresh_from_db()
    assert unfit.error_code == "sampler_not_supported" and "ddim" in unfit.error_message
    assert Image.objects.filter(generation=fitting).count() == 1


def test_the_record_says_which_memory_saving_a_job_needed() -> None:
    user = User.objects.create(username="tight")
    probe = ModelCache().get(default_model().path)
    two = estimate_bytes(probe, [spec("a", [1]), spec("b", [2])], "normal")
    runner = GenerationRunner(name="tight-runner", memory_budget=MemoryBudget(two - 1))
    try:
        head, mate = queued(user, prompt="a"), queued(user, prompt="b")
        enqueue(mate)
        runner.run_one(str(head.id))
        tiny = queued(user, prompt="c")
        starved = GenerationRunner(name="starved-runner", memory_budget=MemoryBudget(1024))
        starved.run_one(str(tiny.id))
        starved.publisher.close()
    finally:
        runner.publisher.close()
    for generation in (head, mate):
        generation.refresh_from_db()
        assert (generation.status, generation.batch_size, generation.memory_mode) == ("succeeded", 2, "split")
    tiny.refresh_from_db()
    assert (tiny.status, tiny.error_code) == (GenerationStatus.FAILED, "out_of_memory")
    assert not Image.objects.filter(generation=tiny).exists()


def test_the_workers_page_shows_phase_timings(admin_client: Client, runner: GenerationRunner) -> None:
    user = User.objects.create(username="timed")
    runner.run_one(str(queued(user).id))

    response = admin_client.get("/admin/workers/")

    (row,) = [r for r in response.context["phases"] if r.pool == "tiny-private-pool"]
    assert row.jobs == 1 and row.means["denoise"] > 0 and row.means["batch"] == 1
    assert response.content.decode().count('id="phases"') == 1  # once, in the page body
    # The runner loaded the model for this job: the load is reported with its time.
    (load,) = [e for e in response.context["model_events"] if e["worker"] == "batch-runner"]
    assert load["kind"] == "disk" and float(str(load["seconds"])) > 0
    assert default_model().path in response.content.decode()
