#!/usr/bin/env python3
"""Compare fer-edge outputs of another machine (or emulated CPU) with the reference ones; stdlib only.

    compare_outputs.py classify REFERENCE.json CANDIDATE.json
    compare_outputs.py run [--close] REFERENCE.jsonl CANDIDATE.jsonl
    compare_outputs.py normalize-run EVENTS.jsonl > REFERENCE.jsonl

``run`` compares the expression events (frame, track, box, label, probabilities, signals); wall-clock
fields (time, fps) and the stats events differ between machines by nature and are left out.
``--close`` is for compressed video: MPEG-4 decoders are not bit-exact across CPUs (x86 and ARM
IDCTs round differently), so boxes may move a few pixels and probabilities a few hundredths.
Exit status: 0 same, 3 different (each difference on one MISMATCH line), 2 unreadable input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# One int8 output step (1/256) plus the 4-place rounding of the printout: the tolerance of
# `fer-edge selftest`. ARM and x86 builds of OpenCV round some float resizes differently (fused
# multiply-add), which moves a face crop by a grey level now and then and an output by one step.
PROB_TOLERANCE = 1 / 256 + 1e-4
CLOSE_PROB_TOLERANCE = 0.05
CLOSE_BOX_TOLERANCE = 6  # pixels: three steps of the 320-wide analysis frame of a 640-wide video
WALL_CLOCK = ("time", "fps")


def _load_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def normalize_run(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in WALL_CLOCK} for e in events if e.get("event") == "expression"]


def diff(ref: Any, got: Any, where: str, close: bool = False) -> list[str]:
    """Paths where ``got`` differs from ``ref``; floats within PROB_TOLERANCE count as equal."""
    if isinstance(ref, dict) and isinstance(got, dict):
        if ref.keys() != got.keys():
            return [f"{where}: keys {sorted(got)} instead of {sorted(ref)}"]
        return [d for key in ref for d in diff(ref[key], got[key], f"{where}.{key}", close)]
    if isinstance(ref, list) and isinstance(got, list):
        if len(ref) != len(got):
            return [f"{where}: {len(got)} items instead of {len(ref)}"]
        return [d for i, (r, g) in enumerate(zip(ref, got, strict=True)) for d in diff(r, g, f"{where}[{i}]", close)]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (ref, got))
    if numbers and (isinstance(ref, float) or (close and ".box[" in where)):
        tolerance = PROB_TOLERANCE if not close else CLOSE_PROB_TOLERANCE if isinstance(ref, float) else \
            CLOSE_BOX_TOLERANCE
        return [] if abs(ref - got) <= tolerance else [f"{where}: {got} instead of {ref}"]
    return [] if ref == got else [f"{where}: {got!r} instead of {ref!r}"]


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "normalize-run":
        for event in normalize_run(_load_lines(Path(argv[1]))):
            print(json.dumps(event, separators=(",", ":")))
        return 0
    close = argv[:1] == ["run"] and "--close" in argv
    argv = [a for a in argv if a != "--close"]
    if len(argv) != 3 or argv[0] not in ("classify", "run"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, ref_path, got_path = argv[0], Path(argv[1]), Path(argv[2])
    try:
        ref, got = (_load_lines(ref_path), _load_lines(got_path))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"compare_outputs: {exc}", file=sys.stderr)
        return 2
    if kind == "run":
        ref, got = normalize_run(ref), normalize_run(got)
        if not ref:
            print(f"compare_outputs: {ref_path}: no expression events to compare with", file=sys.stderr)
            return 2
    else:
        for entry in (*ref, *got):
            entry.pop("image", None)  # the same picture, at another path
    problems = diff(ref, got, kind, close)
    for problem in problems[:20]:
        print(f"MISMATCH {problem}")
    if len(problems) > 20:
        print(f"MISMATCH ... and {len(problems) - 20} more")
    verdict = ("DIFFERS from" if problems else "close to" if close else "same as")
    print(f"{kind}: {verdict} {ref_path} ({len(ref)} records{', video tolerances' if close else ''})")
    return 3 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
