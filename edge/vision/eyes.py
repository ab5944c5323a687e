"""Eye state per tracked face: locate both eyes, classify open/closed with the int8 eye model.

Two ways to locate the eyes, chosen in the config:

- ``geometry`` (default): fixed positions inside the Haar face box, (0.28, 0.37) and (0.72, 0.37) of
  its width/height with a square side of 0.28 of its width. These match where OpenCV's own eye
  cascade finds the eyes on frontal faces, and cost nothing.
- ``cascade``: OpenCV's ``haarcascade_eye.xml`` in the upper 60% of the face. It fails more often on
  closed eyes (an eye detector looks for an open eye), and a failure is *unknown*, never *closed*.

"Closed" must be earned. The reading is *unknown* (never closed) when the face is too small for its
eye patches to hold an eye (``min_face_px``), when a patch has too little contrast to show one
(sunglasses, glare, a dark cabin: ``min_patch_contrast``), when the two eyes disagree (one open, one
closed: a turned head's far eye, a hand, a wink; ``require_both``), and when the face is confidently
smiling and the eyes read closed with less than ``smile_closed_at`` (a laugh narrows the eyes: the
best-known false closure in driver monitoring).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.contract import ModelCardError
from edge.vision.classifier import load_model_with_card
from edge.vision.detect import Box, cascade_path, crop_face

EYE_CENTRES = ((0.28, 0.37), (0.72, 0.37))
EYE_SIDE = 0.28


@dataclass(frozen=True)
class EyeGate:
    """When an eye reading is trusted (see the module docstring); the defaults are measured in the README."""

    closed_threshold: float = 0.5
    min_face_px: int = 0
    min_patch_contrast: float = 0.0
    require_both: bool = False
    smile_at: float | None = None  # expression-model "happy" probability from which closed needs more evidence
    smile_closed_at: float = 1.0  # the closed probability that evidence is (1.0: a smiling face is never closed)


@dataclass
class EyeReading:
    closed_prob: float | None  # the trusted closed probability; None = unknown
    eyes_found: int
    boxes: list[Box]
    raw_probs: tuple[float, ...] = ()  # the model's closed probability per eye, before gating
    unknown_reason: str | None = None  # small_face | no_eyes | low_contrast | eyes_disagree | smile
    contrast: float | None = None  # the lowest grey-level standard deviation of the eye patches


class EyeStateEstimator:
    def __init__(self, model: Path, method: str = "geometry", threads: int = 1, gate: EyeGate | None = None,
                 verify: bool = True):
        self.classifier, self.card = load_model_with_card(model, threads, verify=verify)
        if "closed" not in self.card.labels:
            raise ModelCardError(f"eyes.model: {model}: eye model labels {self.card.labels} have no 'closed' class")
        self._closed = self.card.labels.index("closed")
        self.method = method
        self.gate = gate or EyeGate()
        self._size = self.classifier.input_size[0]
        self._cascade = None
        if method == "cascade":
            self._cascade = cv2.CascadeClassifier(str(cascade_path("haarcascade_eye.xml")))
        elif method != "geometry":
            raise ValueError(f"eye location method must be geometry or cascade, not {method!r}")

    def locate(self, grey: np.ndarray, face: Box) -> list[Box]:
        x, y, w, h = face
        if self._cascade is None:
            side = EYE_SIDE * w
            return [(round(x + cx * w - side / 2), round(y + cy * h - side / 2), round(side), round(side))
                    for cx, cy in EYE_CENTRES]
        x0, y0 = max(0, x), max(0, y)
        upper = grey[y0 : y0 + int(h * 0.6), x0 : x0 + w]
        if upper.size == 0:
            return []
        found = self._cascade.detectMultiScale(upper, 1.1, 4, minSize=(max(8, int(w * 0.12)),) * 2)
        boxes = [(int(ex + x0), int(ey + y0), int(ew), int(eh)) for ex, ey, ew, eh in (found if len(found) else [])]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return sorted(boxes[:2])

    def estimate(self, grey: np.ndarray, face: Box, happy: float | None = None) -> EyeReading:
        """``happy``: the face's (smoothed, calibrated) happy probability, for the smile gate."""
        gate = self.gate
        if max(face[2], face[3]) < gate.min_face_px:
            return EyeReading(None, 0, [], unknown_reason="small_face")
        boxes = self.locate(grey, face)
        if not boxes:
            return EyeReading(None, 0, [], unknown_reason="no_eyes")
        patches = [crop_face(grey, b, self._size) for b in boxes]
        probs = tuple(float(self.classifier.predict(p)[0][self._closed]) for p in patches)
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
        if gate.closed_threshold <= value < gate.smile_closed_at and gate.smile_at is not None \
                and happy is not None and happy >= gate.smile_at:
            reading.unknown_reason = "smile"
            return reading
        reading.closed_prob = value
        return reading
