"""One frame in, tracked and classified faces out: detect (every N frames) -> track -> classify -> smooth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.capture.sources import Frame
from edge.config import AppConfig
from edge.contract import ModelCard
from edge.vision.classifier import Classifier
from edge.vision.detect import Box, HaarFaceDetector, appearance_score, crop_face, face_template, hold_by_template
from edge.vision.tracker import IoUTracker, Track, iou, label_for

HOLD_MIN_HITS = 3


@dataclass
class FaceResult:
    track_id: int
    box: Box
    label: str  # smoothed label, or "uncertain"
    score: float  # smoothed top probability
    probs: np.ndarray  # smoothed probabilities
    raw_probs: np.ndarray  # this frame's probabilities
    crop: np.ndarray  # the model input (never leaves the device unless configured)
    track: Track


@dataclass
class FrameResult:
    frame: Frame
    faces: list[FaceResult]
    detected: bool  # detection ran on this frame
    alive_tracks: list[int]  # every track the tracker holds, including those waiting for re-identification


class Pipeline:
    def __init__(self, cfg: AppConfig, classifier: Classifier, card: ModelCard,
                 detector: HaarFaceDetector | None = None):
        self.cfg = cfg
        self.classifier = classifier
        self.card = card
        self.labels = list(card.labels)
        self.detector = detector or HaarFaceDetector(cfg.detector)
        self.tracker = IoUTracker(cfg.tracker)
        self._frames = 0
        self._size = classifier.input_size[0]

    def _recover_missed(self, grey: np.ndarray, boxes: list[Box], now: float) -> tuple[list[Box], list[Box]]:
        """Visible tracks that no fresh box matches get a second, local, relaxed search, then a template
        match against their last detected appearance. Returns (boxes found again, boxes held by template)."""
        cfg = self.cfg.detector
        found: list[Box] = []
        held: list[Box] = []
        for track in self.tracker.visible():
            if any(iou(track.box, b) >= self.cfg.tracker.iou_threshold for b in boxes):
                continue
            template = track.extra.get("template")
            box = self.detector.redetect(grey, track.box) if cfg.redetect else None
            if box is not None and self._resembles(grey, box, template):
                found.append(box)
                continue
            # Only a face detected on HOLD_MIN_HITS detection frames is held: a one-frame false face on a
            # still background would match itself.
            if template is None or cfg.hold_min_score is None or track.hits < HOLD_MIN_HITS \
                    or now - track.extra.get("detected_at", now) > cfg.hold_max_s:
                continue
            box = hold_by_template(grey, template, track.box, cfg.hold_min_score)
            if box is not None and not any(iou(box, b) > 0 for b in boxes + found):
                held.append(box)
        return found, held

    def _resembles(self, grey: np.ndarray, box: Box, template: np.ndarray | None) -> bool:
        """Whether a box the relaxed search found looks like the track's face. That search also finds false
        faces in texture; one that does not look like the face would keep a track alive on the background
        after the person left."""
        min_score = self.cfg.detector.redetect_min_score
        if min_score is None:
            return True
        return template is not None and appearance_score(grey, box, template) >= min_score

    def process(self, frame: Frame) -> FrameResult:
        now = frame.timestamp
        detect = self._frames % self.cfg.detector.every_n_frames == 0
        self._frames += 1
        if detect:
            boxes = self.detector.detect(frame.grey)
            found, held = self._recover_missed(frame.grey, boxes, now)
            tracks = self.tracker.update(boxes + found + held, now)
            for track in tracks:
                # Only the detector's own boxes become the template: a held or re-found box could drift
                # off the face, and a template taken from it would then vouch for the drift.
                if track.box in boxes:
                    track.extra["template"] = face_template(frame.grey, track.box)
                if track.box not in held:
                    track.extra["detected_at"] = now
        else:
            self.tracker.expire(now)
            tracks = self.tracker.visible()
        faces = []
        for track in tracks:
            crop = crop_face(frame.grey, track.box, self._size, self.card.input.crop_scale)
            raw = self.classifier.predict(crop)[0]  # batch 1: the interpreter never reallocates
            smoothed = track.smooth(raw, now, self.cfg.tracker.smoothing_s)
            label, score = label_for(smoothed, self.labels, self.cfg.tracker.uncertain_below)
            faces.append(FaceResult(track.track_id, track.box, label, score, smoothed.copy(), raw, crop, track))
        return FrameResult(frame, faces, detect, [t.track_id for t in self.tracker.active()])
