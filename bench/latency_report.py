"""What bench/latency.py prints: each target's figures, the ratios to ComfyUI and the targets of
issue 16, met or not, in this run."""

from __future__ import annotations

from typing import Any

from bench.roundtrip import PHASES

SIZES = (64, 512)


def print_result(name: str, result: dict[Any, Any]) -> None:
    print(f"\n{name}")
    for side in SIZES:
        s = result[side]
        phases = ", ".join(f"{p} {s[p]:.1f}" for p in PHASES)
        print(f"  {side}x{side}: p50 {s['p50']:.1f} ms, p95 {s['p95']:.1f} ms  (phase medians ms: {phases})")
        cpu = ", ".join(f"{k[4:]} {v:.1f}" for k, v in s.items() if k.startswith("cpu "))
        print(f"    CPU per round trip, ms: {cpu}")
    print(f"  submissions: {result['submit1']:.0f}/s from 1 client, {result['submit8']:.0f}/s from 8 threads")
    print(f"  one worker drains {result['drain']:.0f} trivial jobs/s ({result['drained']} jobs)")
    if result.get("drain cpu"):
        print(f"    worker CPU per drained job: {result['drain cpu']:.2f} ms")


def print_ratios(results: dict[str, dict[Any, Any]]) -> None:
    reference = results.get("ComfyUI")
    if reference is None:
        print("\nComfyUI not set up (see this file's docstring): Atelier measured alone, no ratios.")
        return
    print("\nAtelier / ComfyUI (below 1.0: Atelier is faster or, for rates, slower)")
    for name, result in results.items():
        if name == "ComfyUI":
            continue
        cells = [f"{side}: p50 {result[side]['p50'] / reference[side]['p50']:.2f}" for side in SIZES]
        cells += [f"p95 {result[side]['p95'] / reference[side]['p95']:.2f}" for side in SIZES]
        cells += [
            f"{k} {result[k] / reference[k]:.2f}" for k in ("submit1", "submit8", "drain") if reference[k]
        ]
        print(f"  {name}: " + ", ".join(cells))
    print("targets (issue 16): " + "; ".join(verdicts(results, reference)))


def verdicts(results: dict[str, dict[Any, Any]], reference: dict[Any, Any]) -> list[str]:
    """Each of the issue's targets, met or not, in this run."""
    found = []
    for name, result in results.items():
        if name == "ComfyUI":
            continue
        bound = 1.0 if "production" in name else 2.0
        for side in SIZES:
            p50, p95 = result[side]["p50"], result[side]["p95"]
            ok = p50 <= bound * reference[side]["p50"] and p95 <= 2 * p50
            found.append(
                f"{name} {side}: p50 <= {bound:g}x ComfyUI's and p95 <= 2 p50 {'met' if ok else 'NOT met'}"
            )
        found.append(f"{name} drain >= 500/s {'met' if result['drain'] >= 500 else 'NOT met'}")
        if "production" in name:
            found.append(f"{name} submissions >= 500/s {'met' if result['submit8'] >= 500 else 'NOT met'}")
    return found
