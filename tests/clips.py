"""Test clips rendered from scikit-image's public-domain astronaut photo (no dataset images)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# Eye centres in the 512x512 astronaut photo (found with OpenCV's eye cascade, checked by eye).
EYES = ((201, 101), (247, 104))


def astronaut_bgr(eyes_closed: bool = False, lid_shade: float = 0.7) -> np.ndarray:
    from skimage import data

    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    if eyes_closed:
        for cx, cy in EYES:
            skin = img[cy + 12 : cy + 16, cx - 4 : cx + 4].reshape(-1, 3).mean(0)
            cv2.ellipse(img, (cx, cy), (12, 8), 0, 0, 360, tuple(int(v * lid_shade) for v in skin), -1)
            patch = img[cy - 12 : cy + 12, cx - 16 : cx + 16]
            cv2.GaussianBlur(patch, (5, 5), 0, dst=patch)
            cv2.ellipse(img, (cx, cy + 1), (10, 3), 0, 10, 170, (40, 35, 35), 3, cv2.LINE_AA)
    return img


def render_drowsy_clip(path: Path, fps: int = 15, open_s: float = 4.0, closed_s: float = 2.0,
                       gone_s: float = 5.0, size: tuple[int, int] = (640, 480)) -> Path:
    """Eyes open, then closed, then the face leaves the frame."""
    w, h = size
    side = min(400, h - 40)
    faces = {False: cv2.resize(astronaut_bgr(False), (side, side), interpolation=cv2.INTER_AREA),
             True: cv2.resize(astronaut_bgr(True), (side, side), interpolation=cv2.INTER_AREA)}
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    total = int((open_s + closed_s + gone_s) * fps)
    for i in range(total):
        t = i / fps
        frame = np.full((h, w, 3), 40, np.uint8)
        if t < open_s + closed_s:
            x = (w - side) // 2 + int(6 * np.sin(t))  # a little head movement
            y = (h - side) // 2
            frame[y : y + side, x : x + side] = faces[t >= open_s]
        writer.write(frame)
    writer.release()
    return path
