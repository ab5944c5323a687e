"""Frame sequences assembled at run time from real faces (FER2013, CEW) for the alert benchmark.

Data cannot be committed, so nothing here is stored: each FER2013 face (48x48) is padded, upscaled to a
realistic face size and placed on a textured background with a little head motion, held for several
seconds as one identity-like run. Closed-eye runs take an open-eyed neutral face, find its eyes with
OpenCV's eye cascade, and paste CEW closed-eye patches there for a known span of seconds
(:func:`paste_closure`: opaque over the eye, turned to the eye line, its skin level matched to the skin
around the eye, fading into the face over a margin of the patch's own border). The eye model's training
composites paste the same CEW patches more simply (:func:`train.eye_composites.paste_eyes`: level, mean
matched to the eye region, a faint seam), so the benchmark's closures are not drawn the way the model
learnt them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from edge.vision.detect import Box, cascade_path
from train.eye_composites import PAD, PASTE_SIDE, find_eyes, upscale_head

FRAME_W, FRAME_H = 640, 360  # the footage size


@dataclass
class Run:
    """One identity-like run: a head image shown for ``duration_s``; ``closed`` spans (start, end) in run seconds."""

    head_open: np.ndarray
    head_closed: np.ndarray | None
    side: int  # face side in frame pixels (the 48-px crop's size after upscaling)
    duration_s: float
    closed: tuple[float, float] | None
    label: str
    source_index: int
    row: int | None = None  # the face's FER2013 CSV data row, when known


def background(rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 1, (FRAME_H // 8, FRAME_W // 8)).astype(np.float32)
    smooth = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 2), (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    level = rng.uniform(60, 160)
    return np.clip(level + 25 * smooth / max(1e-6, float(smooth.std())), 0, 255).astype(np.uint8)


@lru_cache(maxsize=64)
def _soft_mask(n: int) -> np.ndarray:
    mask = np.zeros((n, n), np.float32)
    edge = max(1, n // 12)
    mask[edge:-edge, edge:-edge] = 1.0
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, n / 30))


def place(frame: np.ndarray, head: np.ndarray, cx: float, cy: float) -> None:
    """Blend ``head`` into ``frame`` centred at (cx, cy) with a soft edge, in place."""
    n = head.shape[0]
    x0, y0 = round(cx - n / 2), round(cy - n / 2)
    x0, y0 = min(max(0, x0), FRAME_W - n), min(max(0, y0), FRAME_H - n)
    mask = _soft_mask(n)
    region = frame[y0 : y0 + n, x0 : x0 + n].astype(np.float32)
    frame[y0 : y0 + n, x0 : x0 + n] = (mask * head + (1 - mask) * region).astype(np.uint8)


Detect = Callable[[np.ndarray], list]


def detectable(head: np.ndarray, detect: Detect, rng: np.random.Generator) -> bool:
    """Whether the face detector finds this head in a test frame (FER2013 crops it cannot find would only
    measure the detector, which has its own benchmark)."""
    frame = background(rng)
    place(frame, head, FRAME_W / 2, FRAME_H / 2)
    return bool(detect(frame))


def expression_runs(faces: np.ndarray, label: str, rng: np.random.Generator, count: int, duration_s: float,
                    detect: Detect, near: tuple[int, int] = (96, 200), far: tuple[int, int] = (48, 79),
                    far_share: float = 0.2) -> list[Run]:
    """``count`` runs of distinct, detectable faces; ``far_share`` of them small (a person at a distance)."""
    runs = []
    for i in rng.permutation(len(faces)):
        lo, hi = far if rng.random() < far_share else near
        side = int(rng.integers(lo, hi + 1))
        head = upscale_head(faces[i], side)
        if detectable(head, detect, rng):
            runs.append(Run(head, None, side, duration_s, None, label, int(i)))
        if len(runs) == count:
            break
    return runs


def eyes_inside_face(eyes: list[Box], side: int) -> bool:
    """Whether both eye boxes lie inside the face itself (the 48-px crop, upscaled to ``side``), not in the
    replicated border around it, where the cascade sometimes pairs an eye with a stray edge."""
    lo, hi = PAD * side / 48, (PAD + 48) * side / 48
    return all(lo <= x and x + w <= hi and lo <= y and y + h <= hi for x, y, w, h in eyes)


CLOSURE_MARGIN = 0.04  # of the face side: skin reflected around a pasted patch, where it fades into the face


@lru_cache(maxsize=64)
def _closure_masks(patch_side: int, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """(blend, ring) for a patch of ``patch_side`` pixels inside a square with ``margin`` more on each side:
    the blend is 1 over the ellipse the patch fills (the eye is covered in full, none of it shows through),
    falls smoothly to 0 across the margin (no seam), and the ring is that fading margin (skin only)."""
    side = patch_side + 2 * margin
    ellipse = np.zeros((side, side), np.uint8)
    cv2.ellipse(ellipse, (side // 2, side // 2), (patch_side // 2, int(patch_side * 0.42)), 0, 0, 360, 1, -1)
    outside = cv2.distanceTransform(1 - ellipse, cv2.DIST_L2, 5)
    fade = np.clip(1 - outside / max(1, margin - 1), 0, 1)  # 0 on the outermost pixels, on every side
    return (fade * fade * (3 - 2 * fade)).astype(np.float32), (outside > 0) & (outside <= margin)


def paste_closure(head: np.ndarray, eyes: list[Box], patches: list[np.ndarray], face_side: int) -> np.ndarray | None:
    """The head with a closed-eye patch centred on each eye box at CEW's scale: opaque over the eye, with the
    patch's own border reflected around it as a margin that fades into the face; turned to the line through
    the two eyes (a leaning head's eyelids lean with it); its lid (the patch's median) set to the skin around
    the eye (the margin's ring) rather than to the eye region's mean; its contrast at most that of the face
    under its square.
    None when the square would not fit inside the head image."""
    (lx, ly, lw, lh), (rx, ry, rw, rh) = eyes
    angle = float(np.degrees(np.arctan2((ry + rh / 2) - (ly + lh / 2), (rx + rw / 2) - (lx + lw / 2))))
    patch_side = round(PASTE_SIDE * face_side)
    margin = max(2, round(CLOSURE_MARGIN * face_side))
    side = patch_side + 2 * margin
    blend, ring = _closure_masks(patch_side, margin)
    turn = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), -angle, 1.0)  # one eye line, both patches
    out = head.astype(np.float32).copy()
    for (x, y, w, h), patch in zip(eyes, patches, strict=True):
        x0, y0 = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
        region = out[y0 : y0 + side, x0 : x0 + side]
        if x0 < 0 or y0 < 0 or region.shape != (side, side):
            return None
        p = cv2.resize(patch, (patch_side, patch_side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        p = cv2.copyMakeBorder(p, margin, margin, margin, margin, cv2.BORDER_REFLECT)
        p = cv2.warpAffine(p, turn, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # An open eye (white against iris) is the strongest contrast around it: a closed lid has no more.
        gain = min(1.0, float(region.std()) / max(1e-6, float(p.std())))
        p = (p - float(np.median(p))) * gain + float(np.median(region[ring]))
        out[y0 : y0 + side, x0 : x0 + side] = blend * p + (1 - blend) * region
    return np.clip(out, 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def _eye_cascade() -> cv2.CascadeClassifier:
    return cv2.CascadeClassifier(str(cascade_path("haarcascade_eye.xml")))


def open_eye_left(closed_head: np.ndarray, eyes: list[Box], side: int) -> bool:
    """Whether, with both patches pasted, the eye cascade still finds an eye inside the face, level with the
    pasted pair and clear of both patches: the pair was one eye and something else (a glasses rim),
    so one real eye stays open and the run would be no closure."""
    n = closed_head.shape[0]
    found = _eye_cascade().detectMultiScale(closed_head[: int(n * 0.6)], 1.1, 4, minSize=(n // 10, n // 10))
    paste = PASTE_SIDE * side
    centres = [(x + w / 2, y + h / 2) for x, y, w, h in eyes]
    level = sum(cy for _, cy in centres) / 2
    for box in found if len(found) else []:
        fx, fy = box[0] + box[2] / 2, box[1] + box[3] / 2
        if eyes_inside_face([tuple(int(v) for v in box)], side) and abs(fy - level) <= paste / 2 \
                and all(abs(fx - cx) > paste for cx, _ in centres):
            return True
    return False


def closed_runs(faces: np.ndarray, closed_patches: list[np.ndarray], rng: np.random.Generator, count: int,
                detect: Detect,
                open_before_s: float = 3.0, closed_s: float = 2.5, open_after_s: float = 1.5,
                sides: tuple[int, int] = (110, 200), rows: np.ndarray | None = None) -> list[Run]:
    """Neutral faces whose eyes the cascade finds, shown open, then with CEW closed patches, then open. A face
    is skipped when its eye pair reaches outside the face or when, with both patches pasted, the cascade
    still finds an open eye: either way the pair was not its two eyes and the run would not be a closure."""
    runs = []
    for i in rng.permutation(len(faces)):
        side = int(rng.integers(sides[0], sides[1] + 1))
        head = upscale_head(faces[i], side)
        eyes = find_eyes(head)
        if eyes is None or not detectable(head, detect, rng):
            continue
        patches = [closed_patches[int(k)] for k in rng.choice(len(closed_patches), size=2, replace=False)]
        closed = paste_closure(head, eyes, patches, side)
        if closed is None or not eyes_inside_face(eyes, side) or open_eye_left(closed, eyes, side):
            continue
        runs.append(Run(head, closed, side, open_before_s + closed_s + open_after_s,
                        (open_before_s, open_before_s + closed_s), "closed", int(i),
                        None if rows is None else int(rows[i])))
        if len(runs) == count:
            break
    return runs


OPEN_PHOTO_LABELS = Path(__file__).with_name("closed_run_faces.json")


@dataclass(frozen=True)
class OpenPhotoLabels:
    """Hand labels of the faces closed runs draw: which were checked, and which of those do not show two open
    eyes in the photo the run shows as "open" (``closed_run_faces.json`` says how they were made)."""

    checked: frozenset[int]
    not_open: dict[int, str]

    def status(self, row: int | None) -> str:
        """``open``, ``not_open`` or ``unchecked``."""
        if row is None or row not in self.checked:
            return "unchecked"
        return "not_open" if row in self.not_open else "open"


def load_open_photo_labels(path: Path = OPEN_PHOTO_LABELS) -> OpenPhotoLabels:
    doc = json.loads(path.read_text())
    return OpenPhotoLabels(frozenset(int(r) for r in doc["checked_rows"]),
                           {int(r): note for r, note in doc["eyes_not_open"].items()})


def frames(runs: list[Run], fps: float, rng: np.random.Generator) -> Iterator[tuple[float, np.ndarray, Run, float]]:
    """(input time, grey frame, run, time within the run), the runs back to back, each at its own place."""
    t0 = 0.0
    for run in runs:
        bg = background(rng)
        n = run.head_open.shape[0]
        cx = rng.uniform(n / 2 + 8, FRAME_W - n / 2 - 8) if n + 16 < FRAME_W else FRAME_W / 2
        cy = rng.uniform(n / 2 + 4, FRAME_H - n / 2 - 4) if n + 8 < FRAME_H else FRAME_H / 2
        phase = rng.uniform(0, 2 * np.pi)
        noise = [rng.normal(0, 2.0, bg.shape).astype(np.int16) for _ in range(4)]  # sensor noise, cycled
        for k in range(round(run.duration_s * fps)):
            rt = k / fps
            closed = run.closed is not None and run.closed[0] <= rt < run.closed[1]
            head = run.head_closed if closed and run.head_closed is not None else run.head_open
            frame = bg.copy()
            # Small head motion (a few pixels, ~0.3 Hz) and sensor noise.
            place(frame, head, cx + 0.03 * n * np.sin(2.1 * rt + phase), cy + 0.02 * n * np.sin(1.3 * rt + phase))
            noisy = frame.astype(np.int16) + noise[k % len(noise)]
            yield t0 + rt, np.clip(noisy, 0, 255).astype(np.uint8), run, rt
        t0 += run.duration_s


def load_closed_patches(cew_root: Path, split: str, photo_disjoint: bool = False) -> list[np.ndarray]:
    """CEW closed-eye patches: ``val`` for the report, the held-out train part to choose (CEW's own split is by
    patch, not by photo: most val photos have their other eye in train). ``photo_disjoint`` keeps, of val, only
    the patches of photos with no eye anywhere in CEW train."""
    from edge.contract import EYE_INPUT_SIZE
    from train.datasets import _read_grey, load_cew_eyes

    if photo_disjoint:
        if split != "PrivateTest":
            raise ValueError("photo_disjoint applies to the report split (CEW val) only")
        root = cew_root / "dataset" if (cew_root / "dataset").is_dir() else cew_root

        def photo(file: Path) -> str:
            return file.stem.removesuffix("_L").removesuffix("_R")

        seen = {photo(f) for f in (root / "train").rglob("*.jpg")}
        files = sorted(f for f in (root / "val" / "closed").glob("*.jpg") if photo(f) not in seen)
        return [_read_grey(f, EYE_INPUT_SIZE) for f in files]
    ds = load_cew_eyes(cew_root)
    data = ds.split(split)
    closed = ds.labels.index("closed")
    return [img for img, lab in zip(data.images, data.labels, strict=True) if lab == closed]
