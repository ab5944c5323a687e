"""Eye patches cut from whole faces, the way the daemon cuts them, for training and measuring the eye model.

CEW's patches are tight crops of eyes from one photo collection. The daemon reads eyes differently: a face
found in a camera frame, a square of ``EYE_SIDE`` x the face width around where the eyes were seen, resized to
the model's 24 px. And CEW's "open" class has few narrowed eyes, so a laugh reads half-closed. This module
makes patches of the daemon's kind from FER2013 faces (any expression, laughs included):

- *natural open*: the face's own eyes, where OpenCV's eye cascade finds a plausible pair (the cascade looks
  for open eyes, and the pair check drops stray hits);
- *pasted closed*: CEW closed-eye patches blended onto those eyes (brightness matched, feathered edges);
- *pasted open*: CEW open-eye patches blended the same way, so that a pasted look is no cue for "closed".

Each face is upscaled to a random size in a camera's range, a little sensor noise is added, and the patch
square is jittered by the amount the face box and the anchors move from frame to frame.
The alert benchmark (``scripts/real_face_sequences.py``) finds eyes and sizes faces with the same functions
but pastes its closures its own way (``paste_closure``), so they are not drawn the way the model learnt them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import numpy as np

from edge.contract import EYE_INPUT_SIZE, EYE_STATE_LABELS
from edge.vision.detect import Box, cascade_path, crop_face
from edge.vision.eyes import EYE_SIDE, plausible_pair

PAD = 10  # FER2013 crops are tight; the padding gives Haar the context around the face
PASTE_SIDE = 0.26  # a CEW patch spans about a quarter of the face's width

_EYE_CASCADE: cv2.CascadeClassifier | None = None


def upscale_head(face: np.ndarray, side: int) -> np.ndarray:
    """The 48x48 face with a replicated border, scaled so the face itself is ``side`` pixels wide."""
    big = cv2.copyMakeBorder(face, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
    n = round(side * big.shape[0] / face.shape[0])
    return cv2.resize(big, (n, n), interpolation=cv2.INTER_CUBIC if n > big.shape[0] else cv2.INTER_AREA)


def find_eyes(head: np.ndarray) -> list[Box] | None:
    """Two eye boxes (left, right in the image) in the upper part of an upscaled head, or None."""
    global _EYE_CASCADE
    if _EYE_CASCADE is None:
        _EYE_CASCADE = cv2.CascadeClassifier(str(cascade_path("haarcascade_eye.xml")))
    n = head.shape[0]
    upper = head[: int(n * 0.6)]
    found = _EYE_CASCADE.detectMultiScale(upper, 1.1, 4, minSize=(n // 10, n // 10))
    if len(found) < 2:
        return None
    boxes = [tuple(int(v) for v in b) for b in sorted(sorted(found, key=lambda b: -b[2] * b[3])[:2],
                                                       key=lambda b: b[0])]
    return boxes if plausible_pair(boxes) else None  # type: ignore[arg-type,return-value]


def paste_eyes(head: np.ndarray, eyes: list[Box], patches: list[np.ndarray], face_side: int) -> np.ndarray | None:
    """The head with an eye patch centred on each eye box, at CEW's scale, its mean brightness matched to the
    eye region's; None when a patch would not fit inside the head image (one eye would stay as it was)."""
    out = head.astype(np.float32).copy()
    for (x, y, w, h), patch in zip(eyes, patches, strict=True):
        side = round(PASTE_SIDE * face_side)
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        region = out[y0 : y0 + side, x0 : x0 + side]
        if x0 < 0 or y0 < 0 or region.shape != (side, side):
            return None
        p = cv2.resize(patch, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        p = p - p.mean() + float(region.mean())
        mask = np.zeros((side, side), np.float32)
        cv2.ellipse(mask, (side // 2, side // 2), (int(side * 0.45), int(side * 0.4)), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, side / 10))
        out[y0 : y0 + side, x0 : x0 + side] = mask * p + (1 - mask) * region
    return np.clip(out, 0, 255).astype(np.uint8)


def eye_patches(head: np.ndarray, eyes: list[Box], face_w: float, rng: np.random.Generator,
                jitter: float = 0.02, noise_std: float = 2.0, size: int = EYE_INPUT_SIZE) -> list[np.ndarray]:
    """The daemon's two eye patches: squares of EYE_SIDE x ``face_w`` around the eye centres, each moved by up
    to ``jitter`` x ``face_w`` at random, cut from the head with sensor noise added."""
    noisy = np.clip(head.astype(np.float32) + rng.normal(0, noise_std, head.shape), 0, 255).astype(np.uint8)
    side = EYE_SIDE * face_w
    out = []
    for x, y, w, h in eyes:
        cx, cy = x + w / 2 + rng.normal(0, jitter * face_w), y + h / 2 + rng.normal(0, jitter * face_w)
        box = (round(cx - side / 2), round(cy - side / 2), round(side), round(side))
        out.append(crop_face(noisy, box, size))
    return out


KINDS = ("natural_open", "pasted_closed", "pasted_open")


def composite_eye_patches(faces: np.ndarray, open_patches: np.ndarray, closed_patches: np.ndarray,
                          rng: np.random.Generator, *, sides: tuple[int, int] = (72, 200),
                          pasted_open_share: float = 0.5,
                          progress: Callable[[Iterator[int]], Iterator[int]] | None = None,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patches from every face whose eye cascade finds a plausible pair: its own eyes (open), CEW closed
    patches pasted on them (closed) and, for ``pasted_open_share`` of the faces, CEW open patches pasted on
    them (open). Returns (images uint8 N x 24 x 24, labels, kind index into KINDS)."""
    closed_label, open_label = EYE_STATE_LABELS.index("closed"), EYE_STATE_LABELS.index("open")
    images: list[np.ndarray] = []
    labels: list[int] = []
    kinds: list[int] = []

    def add(patches: list[np.ndarray], label: int, kind: str) -> None:
        images.extend(patches)
        labels.extend([label] * len(patches))
        kinds.extend([KINDS.index(kind)] * len(patches))

    indices: Iterator[int] = iter(range(len(faces)))
    for i in progress(indices) if progress else indices:
        side = int(rng.integers(sides[0], sides[1] + 1))
        head = upscale_head(faces[i], side)
        eyes = find_eyes(head)
        if eyes is None:
            continue
        face_w = side * rng.uniform(0.9, 1.1)  # the detector's box is about the FER2013 crop, give or take
        add(eye_patches(head, eyes, face_w, rng), open_label, "natural_open")
        pick = rng.choice(len(closed_patches), size=2, replace=False)
        closed = paste_eyes(head, eyes, [closed_patches[k] for k in pick], side)
        if closed is not None:
            add(eye_patches(closed, eyes, face_w, rng), closed_label, "pasted_closed")
        if rng.random() < pasted_open_share:
            pick = rng.choice(len(open_patches), size=2, replace=False)
            opened = paste_eyes(head, eyes, [open_patches[k] for k in pick], side)
            if opened is not None:
                add(eye_patches(opened, eyes, face_w, rng), open_label, "pasted_open")
    size = EYE_INPUT_SIZE
    return (np.stack(images) if images else np.zeros((0, size, size), np.uint8),
            np.asarray(labels, np.int64), np.asarray(kinds, np.int64))
