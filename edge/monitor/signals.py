"""Signals over time, all in seconds of input time (frame-rate independent).

Per subject: eye-closed probability, continuous closure duration (open or unknown readings inside a
closure end it only once they have lasted ``closure_gap_s``; meanwhile the duration holds), PERCLOS over a
rolling window (time-weighted share of *known* eye time spent closed), blink rate, smoothed expression
probabilities and a distress score. Per monitor: how long no face has been in view.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge.contract import DISTRESS_LABELS

MAX_GAP_S = 0.5  # a longer gap between frames (stall, dropped frames) counts as unknown time


@dataclass
class SubjectSignals:
    """Rolling eye and expression state of one tracked face."""

    window_s: float = 60.0
    closed_threshold: float = 0.5
    blink_max_s: float = 0.5
    min_coverage_s: float = 20.0
    closure_gap_s: float = 0.0  # open or unknown readings shorter than this do not end a closure
    eye_closed_prob: float | None = None
    closed: bool | None = None
    closed_since: float | None = None
    distress: float = 0.0
    distress_weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DISTRESS_LABELS, 1.0))
    distress_top_only: bool = True
    probs: dict[str, float] = field(default_factory=dict)
    _intervals: deque = field(default_factory=deque)  # (start, end, closed: bool) of known eye time
    _blinks: deque = field(default_factory=deque)  # end times of closures shorter than blink_max_s
    _last_t: float | None = None
    _open_since: float | None = None  # first open/unknown reading inside a closure not yet ended (closure_gap_s)
    _last_closed_t: float = 0.0  # the latest closed reading
    _gap_saw_open: bool = False  # that spell had an open reading (a closure ended by opening eyes may be a blink)

    def update(self, t: float, eye_closed_prob: float | None, probs: dict[str, float] | None) -> None:
        if self._last_t is not None and self.closed is not None:
            start = self._last_t
            end = min(t, start + MAX_GAP_S)
            if end > start:
                self._intervals.append((start, end, self.closed))
        self._last_t = t
        if probs is not None:
            self.probs = probs
            self.distress = distress_score(probs, self.distress_weights, self.distress_top_only)
        self.eye_closed_prob = eye_closed_prob
        closed = None if eye_closed_prob is None else eye_closed_prob >= self.closed_threshold
        if closed:
            if self._open_since is not None and t - self._open_since > self.closure_gap_s + 1e-9:
                self._end_closure(t)  # the spell between readings outlasted the gap (a slow or stalled feed)
            if self.closed_since is None:
                self.closed_since = t
            self._open_since, self._gap_saw_open, self._last_closed_t = None, False, t
        elif self.closed_since is not None:
            # An open or unknown reading inside a closure ends it only once such readings have lasted
            # closure_gap_s: a single misread or unreadable frame must not restart a microsleep's clock.
            # Unknown is never closed: it does not start a closure, the closure's duration does not grow
            # while it lasts (closure_s), and a longer spell ends it.
            if self._open_since is None:
                self._open_since = t
            self._gap_saw_open |= closed is False
            if t - self._open_since >= self.closure_gap_s - 1e-9:
                self._end_closure(t)
        self.closed = closed
        horizon = t - self.window_s
        while self._intervals and self._intervals[0][1] <= horizon:
            self._intervals.popleft()
        while self._blinks and self._blinks[0] <= horizon:
            self._blinks.popleft()

    def _end_closure(self, t: float) -> None:
        assert self.closed_since is not None and self._open_since is not None
        if self._gap_saw_open and self._open_since - self.closed_since <= self.blink_max_s:
            self._blinks.append(t)
        self.closed_since = self._open_since = None
        self._gap_saw_open = False

    def closure_s(self, t: float) -> float:
        """How long the eyes have been closed; during a bridged open or unknown spell it holds at its value at
        the last closed reading, so an alarm is never raised on a frame not read closed."""
        if self.closed_since is None:
            return 0.0
        return (self._last_closed_t if self._open_since is not None else t) - self.closed_since

    def perclos(self, t: float) -> float | None:
        """Share of known eye time in the window with the eyes closed; None until enough coverage."""
        horizon = t - self.window_s
        known = closed = 0.0
        for start, end, was_closed in self._intervals:
            span = end - max(start, horizon)
            if span <= 0:
                continue
            known += span
            if was_closed:
                closed += span
        if known < self.min_coverage_s:
            return None
        return closed / known

    def blink_rate_per_min(self, t: float) -> float:
        return len(self._blinks) * 60.0 / self.window_s

    def snapshot(self, t: float) -> dict[str, float | None]:
        return {
            "eye_closed_prob": None if self.eye_closed_prob is None else round(self.eye_closed_prob, 4),
            "closure_s": round(self.closure_s(t), 3),
            "perclos": None if (p := self.perclos(t)) is None else round(p, 4),
            "blink_rate_per_min": round(self.blink_rate_per_min(t), 2),
            "distress": round(self.distress, 4),
        }


@dataclass
class PresenceSignal:
    """Seconds since a face was last in view (0 while one is)."""

    last_seen: float | None = None
    started: float | None = None

    def update(self, t: float, face_in_view: bool) -> None:
        if self.started is None:
            self.started = t
        if face_in_view:
            self.last_seen = t

    def absent_s(self, t: float) -> float:
        reference = self.last_seen if self.last_seen is not None else self.started
        return 0.0 if reference is None else max(0.0, t - reference)


def distress_score(probs: dict[str, float], weights: dict[str, float], top_only: bool = True) -> float:
    """Weighted sum of the distress classes' probabilities; with ``top_only``, 0 unless one of them leads.

    A laughing face can keep much of its remaining mass on sad and fear (0.58-0.68 in a field recording
    with uncalibrated outputs); requiring a distress class on top means a smile is never distress (README).
    """
    if not probs:
        return 0.0
    if top_only and weights.get(max(probs, key=probs.__getitem__), 0.0) <= 0.0:
        return 0.0
    return float(sum(w * probs.get(label, 0.0) for label, w in weights.items()))


def probs_dict(labels: list[str], probs: np.ndarray) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, probs, strict=True)}
