"""Per-face tracks (IoU matching) with frame-rate-independent smoothing of class probabilities.

The exponential moving average uses ``alpha = 1 - exp(-dt / tau)``: the same time constant in
seconds gives the same smoothed curve at 5, 15 or 30 frames/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.config import TrackerConfig
from edge.vision.detect import Box

UNCERTAIN = "uncertain"


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    track_id: int
    box: Box
    first_seen: float
    last_seen: float
    probs: np.ndarray | None = None  # smoothed
    last_update: float | None = None
    hits: int = 1
    visible: bool = True  # matched at the latest detection; unmatched tracks wait for re-identification
    extra: dict = field(default_factory=dict)  # per-track state of later stages (eye state, signals)

    def smooth(self, probs: np.ndarray, now: float, tau: float) -> np.ndarray:
        if self.probs is None or self.last_update is None or tau <= 0:
            self.probs = probs.astype(np.float32).copy()
        else:
            dt = max(0.0, now - self.last_update)
            alpha = 1.0 - math.exp(-dt / tau)
            self.probs = (1 - alpha) * self.probs + alpha * probs
        self.last_update = now
        return self.probs


class IoUTracker:
    def __init__(self, cfg: TrackerConfig):
        self.cfg = cfg
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, boxes: list[Box], now: float) -> list[Track]:
        """Match fresh detections to tracks (greedy by IoU), start new tracks, expire stale ones."""
        pairs = sorted(
            ((iou(t.box, b), tid, bi) for tid, t in self.tracks.items() for bi, b in enumerate(boxes)),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for score, tid, bi in pairs:
            if score < self.cfg.iou_threshold or tid in used_tracks or bi in used_boxes:
                continue
            track = self.tracks[tid]
            track.box, track.last_seen = boxes[bi], now
            track.hits += 1
            track.visible = True
            used_tracks.add(tid)
            used_boxes.add(bi)
        for bi, box in enumerate(boxes):
            if bi not in used_boxes:
                self.tracks[self._next_id] = Track(self._next_id, box, now, now)
                used_tracks.add(self._next_id)
                self._next_id += 1
        for tid, track in self.tracks.items():
            if tid not in used_tracks:
                track.visible = False
        self.expire(now)
        return self.visible()

    def expire(self, now: float) -> list[Track]:
        gone = [t for t in self.tracks.values() if now - t.last_seen > self.cfg.max_missed_s]
        for t in gone:
            del self.tracks[t.track_id]
        return gone

    def active(self) -> list[Track]:
        """Every live track, including those not matched at the latest detection."""
        return sorted(self.tracks.values(), key=lambda t: t.track_id)

    def visible(self) -> list[Track]:
        """Tracks matched at the latest detection: the faces that are really in view."""
        return [t for t in self.active() if t.visible]


def label_for(probs: np.ndarray, labels: list[str], uncertain_below: float) -> tuple[str, float]:
    top = int(np.argmax(probs))
    score = float(probs[top])
    return (labels[top] if score >= uncertain_below else UNCERTAIN), score
