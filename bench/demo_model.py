"""The built-in model judged: what share of 320 fixed prompt+seed pairs show what was asked.

    .venv/bin/python bench/demo_model.py                     # the shipped weights
    .venv/bin/python bench/demo_model.py --model DIR --cases 100 --write-manifest

Scores per attribute (background colour, object colour, position, count, shape, scene) over the
seen combinations and the held-out ones (never drawn in training), seconds per image at 256x256 and
20 steps, and guidance 7 against guidance 1 on the same prompts. The judge is demo_model/judge.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import torch  # noqa: E402

from demo_model import manifest  # noqa: E402
from demo_model.evaluation import evaluation_set, pipeline_generator, score  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=manifest.WEIGHTS)
    parser.add_argument("--cases", type=int, default=320)
    parser.add_argument(
        "--guidance", type=float, default=3.0, help="the built-in model's default (model_catalog)"
    )
    parser.add_argument("--guidance-cases", type=int, default=60, help="prompts scored at guidance 1 and 7")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--write-manifest", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = evaluation_set(args.cases)
    scores = score(pipeline_generator(args.model, guidance=args.guidance), cases)
    subset = evaluation_set(args.guidance_cases)
    guidance = {
        "guidance_1": score(pipeline_generator(args.model, guidance=1.0), subset),
        "guidance_7": score(pipeline_generator(args.model, guidance=7.0), subset),
    }
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "guidance": args.guidance,
        "scores": scores,
        **guidance,
    }
    print(json.dumps(result, indent=2))
    if args.write_manifest:
        manifest.write(args.model, scores=scores, guidance_scores=guidance, scores_guidance=args.guidance)


if __name__ == "__main__":
    main()
