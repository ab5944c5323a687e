"""Eye state per tracked face: locate both eyes, classify open/closed with the int8 eye model.

Three ways to locate the eyes, chosen in the config:

- ``anchored`` (default): where this face's eyes were seen open. While a tracked face's eyes are open,
  OpenCV's eye cascade finds them; a pair found where eyes can be (near the geometry positions, side by
  side, alike in size) and read *open* by the eye model moves the track's anchors, kept relative to the
  face box. A closed eye lies where the open eye was, so the patches stay on the eyes when they close
  and the cascade no longer finds them. Until a track has an anchor, the geometry positions are used.
  The cascade runs every ``ANCHOR_TRY_S`` until a track has ``ANCHOR_SAMPLES`` sightings, then once per
  ``ANCHOR_REFRESH_S``. A new track that starts near where a track ended less than ``RETIRED_KEEP_S`` ago
  takes over its anchor (the same face, found again after a nod or a detector gap). An anchor keeps the
  face's appearance at its latest sighting and is used only while the face in the box resembles it
  (``ANCHOR_SAME_FACE``): another person in the same place gets fresh anchors.
- ``geometry``: fixed positions inside the Haar face box, (0.28, 0.37) and (0.72, 0.37) of
  its width/height. These match where the eye cascade finds the eyes on an average frontal face, and
  cost nothing, but a face whose eyes sit elsewhere in its box gets patches partly off the eyes.
- ``cascade``: the eye cascade in the upper 60% of the face on every frame. It fails more often on
  closed eyes (an eye detector looks for an open eye), and a failure is *unknown*, never *closed*.

``anchored`` and ``geometry`` crop a square of side 0.28 of the face width around each eye centre.

"Closed" must be earned. The reading is *unknown* (never closed) when the face is too small for its
eye patches to hold an eye (``min_face_px``), when a patch has too little contrast to show one
(sunglasses, glare, a dark cabin: ``min_patch_contrast``), when the two eyes disagree (one open, one
closed: a turned head's far eye, a hand, a wink; ``require_both``), when the anchored method has never
seen this face's eyes open (``require_open_sighting``: a closure is a change from open eyes, and a face
whose eyes never look open, behind make-up, downcast or shut from the first frame, gives no reference), and
when the face is confidently
smiling and the eyes read closed with less than ``smile_closed_at`` (a laugh narrows the eyes: the
best-known false closure in driver monitoring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

from edge.contract import ModelCardError
from edge.vision.classifier import load_model_with_card
from edge.vision.detect import Box, cascade_path, crop_face, face_template, is_flat, template_score
from edge.vision.tracker import iou

EYE_CENTRES = ((0.28, 0.37), (0.72, 0.37))
EYE_SIDE = 0.28
ANCHOR_REACH = (0.12, 0.12)  # how far (face width, height) an anchor may sit from its geometry position
ANCHOR_SAMPLES = 5
CASCADE_FACE_PX = 100  # the eye cascade runs on the upper face enlarged to at least this width
ANCHOR_TRY_S = 0.2
ANCHOR_REFRESH_S = 1.0
ANCHOR_OPEN_BELOW = 0.3  # a sighting counts only when the model reads both eyes this clearly open
OPEN_FRAMES = 3  # frames with both eyes read clearly open at their patches that also count as seeing them open
PAIR_CANDIDATES = 6  # the largest eye-cascade boxes whose pairs the anchor check tries
RETIRED_KEEP_S = 5.0  # a new track near a track lost this recently takes over its anchors
# An anchor belongs to the face it was learned on: below this correlation with that face's appearance at its
# last sighting, the face in the box is another person's (PublicTest: the same face scored >= 0.29 between
# detections, open or closed eyes; different faces at the benchmark's cuts scored -0.33-0.72).
ANCHOR_SAME_FACE = 0.2
MAX_ROLL_DEG = 15.0  # eye pairs tilted more than this from level (a head leaning to a shoulder) are not eyes
_MAX_ROLL_SLOPE = math.tan(math.radians(MAX_ROLL_DEG))


def plausible_pair(boxes: list[Box]) -> bool:
    """Two eye boxes, left to right, that can be a pair: side by side, alike in size and height."""
    (lx, ly, lw, _), (rx, ry, rw, _) = boxes
    return rx >= lx + 0.8 * lw and abs(ly - ry) <= 0.25 * lw and 0.7 < lw / rw < 1.4


def rolled_pair(boxes: list[Box]) -> bool:
    """Two eye boxes, left to right, that can be a face's eyes: side by side, alike in size, and the line
    through their centres within MAX_ROLL_DEG of level. :func:`plausible_pair` (top edges within a quarter eye
    width, about 11 degrees) stays the rule where closed eyes are pasted, for the eye model's composites and
    the alert benchmark; the anchors also accept a head tilted further."""
    (lx, ly, lw, lh), (rx, ry, rw, rh) = boxes
    dx, dy = (rx + rw / 2) - (lx + lw / 2), (ry + rh / 2) - (ly + lh / 2)
    return rx >= lx + 0.8 * lw and 0.7 < lw / rw < 1.4 and abs(dy) <= _MAX_ROLL_SLOPE * dx


@dataclass
class EyeAnchor:
    """One track's eye centres, relative to its face box, from sightings of its open eyes."""

    centres: list[tuple[float, float]] = field(default_factory=lambda: list(EYE_CENTRES))
    samples: int = 0  # cascade sightings that moved the centres
    open_frames: int = 0  # frames whose patches the model read clearly open
    last_try: float = -math.inf
    last_box: Box | None = None
    last_seen: float = -math.inf
    appearance: np.ndarray | None = field(default=None, repr=False)  # the face (face_template) at the latest sighting

    def fits(self, grey: np.ndarray, face: Box) -> bool:
        """Whether the face in ``face`` can be the face this anchor was learned on (True when either looks
        flat: a dark or washed-out frame proves nothing)."""
        current = face_template(grey, face)
        if self.appearance is None or is_flat(self.appearance) or is_flat(current):
            return True
        return template_score(current, self.appearance) >= ANCHOR_SAME_FACE

    @property
    def seen_open(self) -> bool:
        return self.samples > 0 or self.open_frames >= OPEN_FRAMES

    def add(self, centres: list[tuple[float, float]]) -> None:
        weight = 1.0 / min(self.samples + 1, 2 * ANCHOR_SAMPLES)  # mean of the first sightings, then a slow EMA
        self.centres = [(ax + weight * (bx - ax), ay + weight * (by - ay))
                        for (ax, ay), (bx, by) in zip(self.centres, centres, strict=True)]
        self.samples += 1

    def due(self, now: float) -> bool:
        return now - self.last_try >= (ANCHOR_TRY_S if self.samples < ANCHOR_SAMPLES else ANCHOR_REFRESH_S)


@dataclass(frozen=True)
class EyeGate:
    """When an eye reading is trusted (see the module docstring); the defaults are measured in the README."""

    closed_threshold: float = 0.5
    min_face_px: int = 0
    min_patch_contrast: float = 0.0
    require_both: bool = False
    smile_at: float | None = None  # expression-model "happy" probability from which closed needs more evidence
    smile_closed_at: float = 1.0  # the closed probability that evidence is (1.0: a smiling face is never closed)
    require_open_sighting: bool = False  # anchored method: closed only on a track whose eyes were once seen open


@dataclass
class EyeReading:
    closed_prob: float | None  # the trusted closed probability; None = unknown
    eyes_found: int
    boxes: list[Box]
    raw_probs: tuple[float, ...] = ()  # the model's closed probability per eye, before gating
    unknown_reason: str | None = None  # small_face | no_eyes | low_contrast | eyes_disagree | smile
    # | not_seen_open
    contrast: float | None = None  # the lowest grey-level standard deviation of the eye patches


class EyeStateEstimator:
    def __init__(self, model: Path, method: str = "anchored", threads: int = 1, gate: EyeGate | None = None,
                 verify: bool = True):
        self.classifier, self.card = load_model_with_card(model, threads, verify=verify)
        if "closed" not in self.card.labels:
            raise ModelCardError(f"eyes.model: {model}: eye model labels {self.card.labels} have no 'closed' class")
        self._closed = self.card.labels.index("closed")
        self.method = method
        self.gate = gate or EyeGate()
        self._size = self.classifier.input_size[0]
        self._cascade = None
        self._anchors: dict[int, EyeAnchor] = {}
        self._retired: list[tuple[float, EyeAnchor]] = []  # (time last seen, anchor) of finished tracks
        if method in ("cascade", "anchored"):
            self._cascade = cv2.CascadeClassifier(str(cascade_path("haarcascade_eye.xml")))
        elif method != "geometry":
            raise ValueError(f"eye location method must be anchored, geometry or cascade, not {method!r}")

    @staticmethod
    def boxes_at(face: Box, centres: list[tuple[float, float]] | tuple[tuple[float, float], ...]) -> list[Box]:
        """Square eye patches of side EYE_SIDE x face width around centres given relative to the face box."""
        x, y, w, h = face
        side = EYE_SIDE * w
        return [(round(x + cx * w - side / 2), round(y + cy * h - side / 2), round(side), round(side))
                for cx, cy in centres]

    def locate(self, grey: np.ndarray, face: Box, track: int | None = None) -> list[Box]:
        if self.method == "geometry":
            return self.boxes_at(face, EYE_CENTRES)
        if self.method == "anchored":
            anchor = self._anchors.get(track) if track is not None else None
            return self.boxes_at(face, anchor.centres if anchor and anchor.samples else EYE_CENTRES)
        return self._cascade_pair(grey, face, strict=False)

    def _cascade_pair(self, grey: np.ndarray, face: Box, strict: bool) -> list[Box]:
        """The two largest eye-cascade boxes in the upper face, sorted left to right. ``strict``: the plausible
        pair (side by side, alike in size and height, each near its geometry position) nearest the geometry
        positions, or nothing."""
        boxes = self._eye_boxes(grey, face)
        if not strict:
            return sorted(boxes[:2])
        # The cascade often fires twice on one eye (a box around the eye and a larger one around eye and
        # brow), so every pair is tried, not only the two largest boxes.
        scored = [(off, pair) for pair in (sorted(two) for two in combinations(boxes[:PAIR_CANDIDATES], 2))
                  if rolled_pair(pair) and (off := self._off_geometry(pair, face)) is not None]
        return min(scored)[1] if scored else []

    def _eye_boxes(self, grey: np.ndarray, face: Box) -> list[Box]:
        """Eye-cascade boxes in the upper face, in frame pixels, largest first."""
        assert self._cascade is not None
        x, y, w, h = face
        x0, y0 = max(0, x), max(0, y)
        upper = grey[y0 : y0 + int(h * 0.6), x0 : x0 + w]
        if upper.size == 0:
            return []
        # The eye cascade's window is 20 px: on faces under CASCADE_FACE_PX the eyes are smaller than that,
        # so the upper face is enlarged first.
        zoom = max(1.0, CASCADE_FACE_PX / w)
        if zoom > 1.0:
            upper = cv2.resize(upper, (round(upper.shape[1] * zoom), round(upper.shape[0] * zoom)),
                               interpolation=cv2.INTER_LINEAR)
        found = self._cascade.detectMultiScale(upper, 1.1, 4, minSize=(max(8, int(w * zoom * 0.12)),) * 2)
        boxes = [(round(ex / zoom) + x0, round(ey / zoom) + y0, round(ew / zoom), round(eh / zoom))
                 for ex, ey, ew, eh in (found if len(found) else [])]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes

    @staticmethod
    def _off_geometry(pair: list[Box], face: Box) -> float | None:
        """How far (summed, in face widths/heights) a pair's centres sit from the geometry positions; None when
        one is beyond ANCHOR_REACH."""
        x, y, w, h = face
        total = 0.0
        for (bx, by, bw, bh), (gx, gy) in zip(pair, EYE_CENTRES, strict=True):
            dx, dy = abs((bx + bw / 2 - x) / w - gx), abs((by + bh / 2 - y) / h - gy)
            if dx > ANCHOR_REACH[0] or dy > ANCHOR_REACH[1]:
                return None
            total += dx + dy
        return total

    def _closed_probs(self, grey: np.ndarray, boxes: list[Box]) -> tuple[list[np.ndarray], tuple[float, ...]]:
        patches = [crop_face(grey, b, self._size) for b in boxes]
        return patches, tuple(float(self.classifier.predict(p)[0][self._closed]) for p in patches)

    def _anchor_for(self, grey: np.ndarray, track: int, face: Box, now: float) -> EyeAnchor:
        """The track's anchor; a new track takes over the anchor of a track lost near its box in the last
        RETIRED_KEEP_S (a face re-found after a nod or a detector gap is the same face). An anchor whose
        face no longer resembles the face in the box (another person in the same place) starts afresh."""
        anchor = self._anchors.get(track)
        if anchor is None or not anchor.fits(grey, face):
            anchor = EyeAnchor()
            self._retired = [(t, a) for t, a in self._retired if now - t <= RETIRED_KEEP_S]
            near = [a for _, a in self._retired if a.last_box is not None and iou(a.last_box, face) >= 0.3
                    and a.fits(grey, face)]
            if near:
                anchor = max(near, key=lambda a: a.last_seen)
                self._retired = [(t, a) for t, a in self._retired if a is not anchor]
            self._anchors[track] = anchor
        anchor.last_box, anchor.last_seen = face, now
        return anchor

    def _learn_anchor(self, grey: np.ndarray, face: Box, track: int, now: float) -> None:
        anchor = self._anchor_for(grey, track, face, now)
        if not anchor.due(now):
            return
        anchor.last_try = now
        pair = self._cascade_pair(grey, face, strict=True)
        if not pair:
            return
        x, y, w, h = face
        centres = [((bx + bw / 2 - x) / w, (by + bh / 2 - y) / h) for bx, by, bw, bh in pair]
        _, probs = self._closed_probs(grey, self.boxes_at(face, centres))
        if max(probs) < ANCHOR_OPEN_BELOW:
            anchor.add(centres)
            anchor.appearance = face_template(grey, face)

    def seen_open(self, track: int) -> bool:
        anchor = self._anchors.get(track)
        return anchor is not None and anchor.seen_open

    def forget(self, track: int) -> None:
        """A finished track's anchor is kept RETIRED_KEEP_S for a track that starts where it ended."""
        anchor = self._anchors.pop(track, None)
        if anchor is not None and anchor.last_box is not None:
            self._retired.append((anchor.last_seen, anchor))

    def estimate(self, grey: np.ndarray, face: Box, happy: float | None = None, track: int | None = None,
                 now: float = 0.0) -> EyeReading:
        """``happy``: the face's (smoothed, calibrated) happy probability, for the smile gate. ``track`` and
        ``now`` (seconds): the face's track and the frame time, for the anchored method's per-track anchors."""
        gate = self.gate
        if max(face[2], face[3]) < gate.min_face_px:
            return EyeReading(None, 0, [], unknown_reason="small_face")
        if self.method == "anchored" and track is not None:
            self._learn_anchor(grey, face, track, now)
        boxes = self.locate(grey, face, track)
        if not boxes:
            return EyeReading(None, 0, [], unknown_reason="no_eyes")
        patches, probs = self._closed_probs(grey, boxes)
        if self.method == "anchored" and track is not None and max(probs) < ANCHOR_OPEN_BELOW:
            self._anchors[track].open_frames += 1
        reading = EyeReading(None, len(boxes), boxes, probs, contrast=min(float(p.std()) for p in patches))
        if reading.contrast < gate.min_patch_contrast:
            reading.unknown_reason = "low_contrast"
            return reading
        closed = [p >= gate.closed_threshold for p in probs]
        if gate.require_both and len(boxes) == 2 and closed[0] != closed[1]:
            reading.unknown_reason = "eyes_disagree"
            return reading
        # Both closed: the weaker closure is the evidence; both open: the stronger closure is the doubt.
        value = (min(probs) if all(closed) else max(probs)) if gate.require_both else float(np.mean(probs))
        if value >= gate.closed_threshold and gate.require_open_sighting and self.method == "anchored" \
                and track is not None and not self.seen_open(track):
            reading.unknown_reason = "not_seen_open"
            return reading
        if gate.closed_threshold <= value < gate.smile_closed_at and gate.smile_at is not None \
                and happy is not None and happy >= gate.smile_at:
            reading.unknown_reason = "smile"
            return reading
        reading.closed_prob = value
        return reading
