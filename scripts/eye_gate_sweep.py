#!/usr/bin/env python3
"""Eye-state gates applied to the per-frame readings that ``bench_alerts.py --dump`` saved.

Run the benchmark once with every gate off, so the dump holds every reading, then compare gate settings
without running the pipeline again:

    printf 'eyes: {min_face_px: 0, min_patch_contrast: 0, smile_at: null}\\n' > /tmp/no_gates.yaml
    python scripts/bench_alerts.py --split PublicTest --skip-rendered --config /tmp/no_gates.yaml \\
        --dump /tmp/pub.npz
    python scripts/eye_gate_sweep.py /tmp/pub.npz

Prints, per setting, the share of frames read "closed" on the calm, laughing and talking runs, the
closed-eye recall on the pasted closures and false "closed" on the open frames of those runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# (label, closed threshold, require both eyes, smile_at or None, smile_closed_at, min face px, min contrast)
SETTINGS = [
    ("mean of both eyes >= 0.5, no gates", 0.5, False, None, 1.0, 0, 0.0),
    ("+ smile gate 0.4 / 0.99, face 72, contrast 6", 0.5, False, 0.4, 0.99, 72, 6.0),
    ("+ smile gate 0.4 / 0.95, face 72, contrast 6 (default)", 0.5, False, 0.4, 0.95, 72, 6.0),
    ("+ smile gate 0.4 / 0.9, face 72, contrast 6", 0.5, False, 0.4, 0.9, 72, 6.0),
    ("+ smile gate 0.5 / 0.95, face 72, contrast 6", 0.5, False, 0.5, 0.95, 72, 6.0),
    ("both eyes >= 0.5, no smile gate", 0.5, True, None, 1.0, 0, 0.0),
    ("both eyes >= 0.5, smile gate 0.4 / 0.95, face 72, contrast 6", 0.5, True, 0.4, 0.95, 72, 6.0),
    ("mean >= 0.4, smile gate 0.4 / 0.95, face 72, contrast 6", 0.4, False, 0.4, 0.95, 72, 6.0),
    ("mean >= 0.6, smile gate 0.4 / 0.95, face 72, contrast 6", 0.6, False, 0.4, 0.95, 72, 6.0),
]


def closed(frames: np.ndarray, thr: float, both: bool, smile: float | None, smile_closed: float,
           min_face: int, min_contrast: float) -> np.ndarray:
    """Which frames the gate reads as closed (the same rules as edge.vision.eyes.EyeStateEstimator)."""
    _, left, right, happy, side, contrast = frames.T
    known = (side >= min_face) & (contrast >= min_contrast)
    if both:
        known &= (left >= thr) == (right >= thr)
        value = np.where(left >= thr, np.minimum(left, right), np.maximum(left, right))
    else:
        value = (left + right) / 2
    out = known & (value >= thr)
    if smile is not None:
        out &= ~((happy >= smile) & (value < smile_closed))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dump", type=Path)
    args = parser.parse_args()
    data = np.load(args.dump)
    print(f"{'setting':58s} {'calm':>7s} {'laugh':>7s} {'talk':>7s} {'recall':>7s} {'open->c':>7s}")
    for label, *gate in SETTINGS:
        row = [float(closed(data[k], *gate).mean()) for k in ("calm", "laughing", "talking")]
        runs = data["closed"]
        span = runs[:, 0] == 1
        c = closed(runs, *gate)
        row += [float(c[span].mean()), float(c[~span].mean())]
        print(f"{label:58s} " + " ".join(f"{v:7.2%}" for v in row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
