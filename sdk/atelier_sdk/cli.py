"""`atelier generate "a prompt" -o out.png`: submit, show progress, save the image."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from atelier_sdk.client import TERMINAL, Client
from atelier_sdk.errors import ApiError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atelier")
    parser.add_argument("--api-key", default=os.environ.get("ATELIER_API_KEY"))
    parser.add_argument("--base-url", default=os.environ.get("ATELIER_BASE_URL", "http://127.0.0.1:8000"))
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="make an image from a prompt")
    generate.add_argument("prompt")
    generate.add_argument("-o", "--output", default="atelier.png")
    generate.add_argument("--width", type=int)
    generate.add_argument("--height", type=int)
    generate.add_argument("--steps", type=int)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--model")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("an API key is needed: --api-key or ATELIER_API_KEY")
    client = Client(args.api_key, args.base_url)
    fields = {k: getattr(args, k) for k in ("width", "height", "steps", "seed", "model") if getattr(args, k)}
    try:
        return run_generate(client, args.prompt, args.output, fields)
    except ApiError as exc:
        print(f"error: {exc} ({exc.code})", file=sys.stderr)
        return 1


def run_generate(client: Client, prompt: str, output: str, fields: dict[str, Any]) -> int:
    events = client.stream_events(timeout=600)
    next(events)  # the snapshot: from here on no event of the new generation can be missed
    generation = client.generate(prompt, **fields)
    for event in events:
        if event.get("id") != generation["id"]:
            continue
        if event["type"] == "generation.progress":
            bar(event.get("progress") or 0.0, event.get("step"), event.get("steps"))
        if event.get("status") in TERMINAL:
            break
    print(file=sys.stderr)
    finished = client.get(generation["id"])
    if finished["status"] != "succeeded":
        error = finished.get("error") or {}
        print(f"error: the generation {finished['status']}: {error.get('message', '')}", file=sys.stderr)
        return 1
    for index, image in enumerate(finished["images"]):
        path = output if index == 0 else f"{os.path.splitext(output)[0]}-{index}.png"
        client.download(image, path)
        print(path)
    return 0


def bar(progress: float, step: Any, steps: Any, width: int = 30) -> None:
    filled = int(progress * width)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {progress * 100:5.1f}% step {step}/{steps}")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
