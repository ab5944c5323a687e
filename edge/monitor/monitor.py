"""Per-frame monitoring: eye state of the subject(s), signals over time, and the rule engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.config import AppConfig, ConfigError
from edge.monitor.rules import RuleEngine
from edge.monitor.signals import PresenceSignal, SubjectSignals, probs_dict
from edge.vision.eyes import EyeGate, EyeReading, EyeStateEstimator
from edge.vision.pipeline import FaceResult, FrameResult


@dataclass
class MonitorUpdate:
    t: float
    subjects: dict[int, dict[str, Any]]  # track id -> signal snapshot (with eye reading)
    monitor: dict[str, Any]  # camera-level signals (absent_s)
    events: list[dict[str, Any]] = field(default_factory=list)  # alert lifecycle events
    eyes: dict[int, EyeReading] = field(default_factory=dict)


class Monitor:
    def __init__(self, cfg: AppConfig, labels: list[str]):
        self.cfg = cfg
        self.labels = labels
        self.engine = RuleEngine(cfg.alerts.effective_rules(), cfg.alerts.profile)
        e = cfg.eyes
        gate = EyeGate(e.closed_threshold, e.min_face_px, e.min_patch_contrast, e.require_both,
                       e.smile_at if "happy" in labels else None, e.smile_closed_at, e.require_open_sighting)
        self.eyes = EyeStateEstimator(e.model, e.method, cfg.classifier.threads, gate, e.verify_hash) \
            if e.enabled else None
        unknown = sorted(set(cfg.signals.distress_weights) - set(labels))
        if unknown:
            raise ConfigError(f"signals.distress_weights: {', '.join(unknown)} not among the model's labels {labels}")
        self.presence = PresenceSignal()
        self.subjects: dict[int, SubjectSignals] = {}
        self._subject: int | None = None  # the track the rules watch under ``subject: largest``

    def _new_subject(self) -> SubjectSignals:
        s = self.cfg.signals
        return SubjectSignals(window_s=s.perclos_window_s, closed_threshold=self.cfg.eyes.closed_threshold,
                              blink_max_s=s.blink_max_s, min_coverage_s=s.perclos_min_coverage_s,
                              distress_weights=dict(s.distress_weights), distress_top_only=s.distress_top_only,
                              closure_gap_s=s.closure_gap_s)

    def watched(self, faces: list[FaceResult]) -> list[FaceResult]:
        """The faces the rules judge: never one narrower than ``alerts.min_face_px``. Under ``largest``, the
        largest face when a subject is chosen, kept while it stays in view: a larger false face in a textured
        background, or someone leaning in, does not take the watch from the person it is on."""
        judged = [f for f in faces if max(f.box[2], f.box[3]) >= self.cfg.alerts.min_face_px]
        if not judged or self.cfg.alerts.subject == "all":
            return judged
        current = next((f for f in judged if f.track_id == self._subject), None)
        if current is None:
            current = max(judged, key=lambda f: f.box[2] * f.box[3])
            self._subject = current.track_id
        return [current]

    def update(self, result: FrameResult) -> MonitorUpdate:
        t = result.frame.timestamp
        update = MonitorUpdate(t, {}, {})
        for face in self.watched(result.faces):
            probs = probs_dict(self.labels, face.probs)
            reading = self.eyes.estimate(result.frame.grey, face.box, probs.get("happy"), face.track_id, t) \
                if self.eyes else EyeReading(None, 0, [])
            signals = self.subjects.setdefault(face.track_id, self._new_subject())
            signals.update(t, reading.closed_prob, probs)
            snapshot = signals.snapshot(t)
            snapshot["eye_state"] = "unknown" if signals.closed is None else ("closed" if signals.closed else "open")
            snapshot["eye_unknown_reason"] = reading.unknown_reason
            update.subjects[face.track_id] = snapshot
            update.eyes[face.track_id] = reading
            update.events.extend(self.engine.evaluate(t, snapshot, face.track_id))
        self.presence.update(t, bool(result.faces))
        update.monitor = {"absent_s": round(self.presence.absent_s(t), 3)}
        update.events.extend(self.engine.evaluate(t, update.monitor, None))
        live = set(result.alive_tracks)
        for track in [tr for tr in self.subjects if tr not in live]:
            del self.subjects[track]
            if self.eyes:
                self.eyes.forget(track)
            update.events.extend(self.engine.drop_track(track, t))
        return update

