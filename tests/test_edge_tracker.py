import math

import numpy as np
import pytest

from edge.config import TrackerConfig
from edge.vision.tracker import UNCERTAIN, IoUTracker, Track, iou, label_for


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_track_ids_persist_and_expire():
    tracker = IoUTracker(TrackerConfig(iou_threshold=0.3, max_missed_s=1.0))
    a = tracker.update([(100, 100, 50, 50), (300, 100, 50, 50)], now=0.0)
    assert [t.track_id for t in a] == [1, 2]
    b = tracker.update([(305, 102, 50, 50), (104, 98, 50, 50)], now=0.1)  # order swapped, moved a little
    assert {t.track_id: t.box[0] for t in b} == {1: 104, 2: 305}
    seen = tracker.update([(104, 98, 50, 50)], now=0.5)  # face 2 not seen: kept, but not reported
    assert [t.track_id for t in tracker.active()] == [1, 2]
    assert [t.track_id for t in seen] == [1] == [t.track_id for t in tracker.visible()]
    again = tracker.update([(104, 98, 50, 50), (306, 100, 50, 50)], now=0.7)  # back within max_missed_s
    assert [t.track_id for t in again] == [1, 2]
    tracker.update([(104, 98, 50, 50)], now=1.2)
    assert [t.track_id for t in tracker.active()] == [1, 2]
    tracker.update([(104, 98, 50, 50)], now=1.8)  # 2 unseen for 1.1 s > 1.0
    assert [t.track_id for t in tracker.active()] == [1]
    new = tracker.update([(400, 300, 40, 40)], now=1.9)
    assert [t.track_id for t in new] == [3]  # ids are never reused


@pytest.mark.parametrize("fps", [5, 15, 30])
def test_smoothing_is_frame_rate_independent(fps):
    tau = 0.5
    track = Track(1, (0, 0, 1, 1), 0.0, 0.0)
    start = np.array([1.0, 0.0])
    step = np.array([0.0, 1.0])
    track.smooth(start, 0.0, tau)
    for i in range(1, fps + 1):  # one second of the new class
        smoothed = track.smooth(step, i / fps, tau)
    assert smoothed[1] == pytest.approx(1 - math.exp(-1.0 / tau), abs=1e-6)


def test_uncertain_state():
    labels = ["a", "b", "c"]
    assert label_for(np.array([0.2, 0.5, 0.3]), labels, 0.4) == ("b", 0.5)
    assert label_for(np.array([0.35, 0.33, 0.32]), labels, 0.4) == (UNCERTAIN, 0.35)
