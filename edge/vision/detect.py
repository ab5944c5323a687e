"""Haar-cascade face detection on a downscaled grey analysis frame, and the model's face crop."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from edge.config import DetectorConfig

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x, y, w, h in full-frame pixels


class DetectorError(RuntimeError):
    pass


def cascade_path(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    data_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if data_dir is None:
        raise DetectorError("this OpenCV build ships no Haar cascades (cv2.data missing); install "
                            "opencv-python-headless<5")
    path = Path(data_dir) / name
    if not path.is_file():
        raise DetectorError(f"Haar cascade {name!r} not found in {data_dir}")
    return path


class HaarFaceDetector:
    def __init__(self, cfg: DetectorConfig):
        self.cfg = cfg
        path = cascade_path(cfg.cascade)
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise DetectorError(f"{path}: not a loadable Haar cascade")

    def detect(self, grey: np.ndarray) -> list[Box]:
        """Faces in full-frame coordinates, largest first, at most ``max_faces``."""
        h, w = grey.shape[:2]
        scale = min(1.0, self.cfg.analysis_width / w)
        small = grey if scale == 1.0 else cv2.resize(grey, (round(w * scale), round(h * scale)),
                                                     interpolation=cv2.INTER_AREA)
        found = self._cascade.detectMultiScale(
            small, scaleFactor=self.cfg.scale_factor, minNeighbors=self.cfg.min_neighbors,
            minSize=(self.cfg.min_size, self.cfg.min_size),
        )
        boxes = [tuple(round(v / scale) for v in box) for box in (found if len(found) else [])]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes[: self.cfg.max_faces]  # type: ignore[return-value]

    def redetect(self, grey: np.ndarray, previous: Box) -> Box | None:
        """Search a region 1.6x the previous box with relaxed settings; the box closest in size wins."""
        _, _, w, h = previous
        x0, y0, x1, y1 = search_region(grey, previous)
        roi = grey[y0:y1, x0:x1]
        if roi.size == 0:
            return None
        scale = min(1.0, self.cfg.analysis_width / grey.shape[1])
        small = roi if scale == 1.0 else cv2.resize(roi, (max(1, round(roi.shape[1] * scale)),
                                                          max(1, round(roi.shape[0] * scale))),
                                                    interpolation=cv2.INTER_AREA)
        min_side = max(self.cfg.min_size, int(0.6 * w * scale))
        max_side = int(1.5 * max(w, h) * scale) + 1
        found = self._cascade.detectMultiScale(small, scaleFactor=self.cfg.scale_factor,
                                               minNeighbors=self.cfg.redetect_min_neighbors,
                                               minSize=(min_side, min_side), maxSize=(max_side, max_side))
        if not len(found):
            return None
        best = min(found, key=lambda b: abs(b[2] / scale - w))
        return (round(best[0] / scale) + x0, round(best[1] / scale) + y0, round(best[2] / scale),
                round(best[3] / scale))


def search_region(grey: np.ndarray, previous: Box, pad_share: float = 0.3) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the previous box grown by ``pad_share`` of its side on every edge, inside the frame."""
    x, y, w, h = previous
    H, W = grey.shape[:2]
    pad = int(pad_share * max(w, h))
    return max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)


TEMPLATE_SIDE = 48  # faces are matched at this size: cheap, and enough detail for a whole face
MIN_TEMPLATE_STD = 2.0  # grey levels


def face_template(grey: np.ndarray, box: Box) -> np.ndarray:
    """A face's appearance for ``hold_by_template``: its box, resized to TEMPLATE_SIDE."""
    return crop_face(grey, box, TEMPLATE_SIDE)


def is_flat(image: np.ndarray) -> bool:
    """A flat image correlates equally with everything, so a match against it proves nothing."""
    return float(image.std()) < MIN_TEMPLATE_STD


def appearance_score(grey: np.ndarray, box: Box, template: np.ndarray) -> float:
    """Normalized correlation of the face at ``box`` with ``template`` (1 = the same appearance); -1 when
    either is flat."""
    return template_score(face_template(grey, box), template)


def template_score(current: np.ndarray, template: np.ndarray) -> float:
    """Normalized correlation of two face templates of one size; -1 when either is flat."""
    if is_flat(template) or is_flat(current):
        return -1.0
    return float(cv2.matchTemplate(current, template, cv2.TM_CCOEFF_NORMED)[0, 0])


def hold_by_template(grey: np.ndarray, template: np.ndarray, previous: Box, min_score: float) -> Box | None:
    """Where ``template`` (the face's last detected appearance) best matches the frame near ``previous``, at
    the previous size, when the normalized correlation reaches ``min_score``; otherwise None."""
    _, _, w, h = previous
    if w <= 0 or h <= 0 or is_flat(template):
        return None
    scale = TEMPLATE_SIDE / max(w, h)
    x0, y0, x1, y1 = search_region(grey, previous)
    roi = grey[y0:y1, x0:x1]
    size = (round(roi.shape[1] * scale), round(roi.shape[0] * scale))
    if size[0] <= TEMPLATE_SIDE or size[1] <= TEMPLATE_SIDE:
        return None
    small = cv2.resize(roi, size, interpolation=cv2.INTER_AREA)
    scores = cv2.matchTemplate(small, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    if not np.isfinite(best) or best < min_score:
        return None
    # The template is a square of side max(w, h) around the box centre: map its corner back to the box's.
    side = max(w, h)
    return (x0 + round(bx / scale + (side - w) / 2), y0 + round(by / scale + (side - h) / 2), w, h)


def crop_face(grey: np.ndarray, box: Box, size: int, scale: float = 1.0) -> np.ndarray:
    """A square crop around the box centre, side = max(w, h) * scale, edges replicated, resized.

    FER2013 faces are square crops roughly the size of a Haar frontal-face box, so scale 1.0 matches
    the training geometry; the card's ``input.crop_scale`` can change it for other models.
    """
    x, y, w, h = box
    side = max(w, h) * scale
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + round(side), y0 + round(side)
    H, W = grey.shape[:2]
    pad = max(0, -x0, -y0, x1 - W, y1 - H)
    if pad:
        grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = grey[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)
