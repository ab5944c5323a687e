"""Eye state per tracked face: locate both eyes, classify open/closed with the int8 eye model.

Two ways to locate the eyes, chosen in the config:

- ``geometry`` (default): fixed positions inside the Haar face box, (0.28, 0.37) and (0.72, 0.37) of
  its width/height with a square side of 0.28 of its width. These match where OpenCV's own eye
  cascade finds the eyes on frontal faces, and cost nothing.
- ``cascade``: OpenCV's ``haarcascade_eye.xml`` in the upper 60% of the face. It fails more often on
  closed eyes (an eye detector looks for an open eye), and a failure is *unknown*, never *closed*.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.vision.classifier import load_model_with_card
from edge.vision.detect import Box, cascade_path, crop_face

EYE_CENTRES = ((0.28, 0.37), (0.72, 0.37))
EYE_SIDE = 0.28


@dataclass
class EyeReading:
    closed_prob: float | None  # mean over the eyes found; None = unknown (no eye found)
    eyes_found: int
    boxes: list[Box]


class EyeStateEstimator:
    def __init__(self, model: Path, method: str = "geometry", threads: int = 1, verify: bool = True):
        self.classifier, self.card = load_model_with_card(model, threads, verify=verify)
        if "closed" not in self.card.labels:
            raise ValueError(f"{model}: eye model labels {self.card.labels} have no 'closed' class")
        self._closed = self.card.labels.index("closed")
        self.method = method
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

    def estimate(self, grey: np.ndarray, face: Box) -> EyeReading:
        boxes = self.locate(grey, face)
        if not boxes:
            return EyeReading(None, 0, [])
        probs = [float(self.classifier.predict(crop_face(grey, b, self._size))[0][self._closed]) for b in boxes]
        return EyeReading(float(np.mean(probs)), len(boxes), boxes)
