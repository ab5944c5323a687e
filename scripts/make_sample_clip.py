#!/usr/bin/env python3
"""Render the bundled sample clip from scikit-image's public-domain ``astronaut`` photo (NASA).

The photo is panned and zoomed across a 640x480 frame for a few seconds, then slides out of view
so the clip also shows a face leaving. No dataset images are used. Re-run to regenerate:

    python scripts/make_sample_clip.py --out edge/samples/astronaut.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def render(seconds: float = 8.0, fps: float = 15.0, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # 512x512, public domain (NASA)
    w, h = size
    frames = []
    total = int(seconds * fps)
    leave_at = int(total * 0.8)
    for i in range(total):
        t = i / max(total - 1, 1)
        zoom = 0.75 + 0.25 * np.sin(np.pi * t)  # 0.75 -> 1.0 -> 0.75 of the frame height
        side = int(h * zoom)
        img = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
        x = int((w - side) / 2 + 60 * np.sin(2 * np.pi * t))
        if i >= leave_at:
            x += int((i - leave_at + 1) / (total - leave_at) * (w + side))  # slides out to the right
        y = (h - side) // 2
        canvas = np.full((h, w, 3), 40, np.uint8)
        x0, x1 = max(0, x), min(w, x + side)
        if x1 > x0:
            canvas[y : y + side, x0:x1] = img[:, x0 - x : x1 - x]
        frames.append(canvas)
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("edge/samples/astronaut.mp4"))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--fps", type=float, default=15.0)
    args = parser.parse_args()
    frames = render(args.seconds, args.fps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"mp4v"), args.fps, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    print(f"wrote {args.out}: {len(frames)} frames at {args.fps} fps, {args.out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
