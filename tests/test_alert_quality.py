"""Closed must be earned, smiles are not distress, and tiny faces are not judged (generated inputs only)."""

from pathlib import Path

import numpy as np
import pytest

from edge.capture.sources import Frame
from edge.config import AppConfig, ConfigError, parse_config
from edge.monitor.monitor import Monitor
from edge.monitor.signals import distress_score
from edge.vision.eyes import EyeGate, EyeStateEstimator
from edge.vision.pipeline import FaceResult, FrameResult

MODELS = Path(__file__).resolve().parent.parent / "models"
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


class FixedEyes:
    """Stands in for the eye model: every patch reads the next closed probability of a cycle."""

    def __init__(self, *closed: float):
        self.closed = list(closed)
        self.calls = 0
        self.input_size = (24, 24)

    def predict(self, crop: np.ndarray) -> np.ndarray:
        p = self.closed[self.calls % len(self.closed)]
        self.calls += 1
        return np.array([[p, 1 - p]], np.float32)  # the eye card's order: closed, open


def estimator(gate: EyeGate, *closed: float) -> EyeStateEstimator:
    est = EyeStateEstimator(MODELS / "eye_state_int8.tflite", gate=gate)
    est.classifier = FixedEyes(*closed)  # type: ignore[assignment]
    return est


def textured(h: int = 360, w: int = 640, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def test_face_below_the_minimum_size_has_unknown_eyes():
    est = estimator(EyeGate(min_face_px=80), 0.99)
    small = est.estimate(textured(), (100, 100, 64, 64))
    assert small.closed_prob is None and small.unknown_reason == "small_face"
    assert est.classifier.calls == 0  # the model is not even asked
    big = est.estimate(textured(), (100, 100, 96, 96))
    assert big.closed_prob == pytest.approx(0.99) and big.unknown_reason is None


def test_a_confident_smiles_squint_does_not_count_as_closed():
    gate = EyeGate(min_face_px=0, smile_at=0.5, smile_closed_at=0.95)
    squint = estimator(gate, 0.85).estimate(textured(), (100, 50, 160, 160), happy=0.93)
    assert squint.closed_prob is None and squint.unknown_reason == "smile"
    # The same eyes on a face that is not smiling are closed ...
    assert estimator(gate, 0.85).estimate(textured(), (100, 50, 160, 160), happy=0.2).closed_prob \
        == pytest.approx(0.85)
    # ... and a smiling face's eyes count as closed only on stronger evidence.
    shut = estimator(gate, 0.99).estimate(textured(), (100, 50, 160, 160), happy=0.93)
    assert shut.closed_prob == pytest.approx(0.99)
    # Open eyes on a smiling face stay a known "open" (PERCLOS keeps counting that time).
    open_ = estimator(gate, 0.1).estimate(textured(), (100, 50, 160, 160), happy=0.93)
    assert open_.closed_prob == pytest.approx(0.1)


def test_patches_without_an_eye_and_disagreeing_eyes_are_unknown():
    flat = np.full((360, 640), 90, np.uint8)  # sunglasses / darkness: nothing to see
    reading = estimator(EyeGate(min_patch_contrast=6.0), 0.99).estimate(flat, (100, 50, 160, 160))
    assert reading.closed_prob is None and reading.unknown_reason == "low_contrast"
    both = EyeGate(require_both=True)
    one_shut = estimator(both, 0.9, 0.1).estimate(textured(), (100, 50, 160, 160))
    assert one_shut.closed_prob is None and one_shut.unknown_reason == "eyes_disagree"
    assert estimator(both, 0.9, 0.7).estimate(textured(), (100, 50, 160, 160)).closed_prob == pytest.approx(0.7)
    assert estimator(EyeGate(), 0.9, 0.1).estimate(textured(), (100, 50, 160, 160)).closed_prob \
        == pytest.approx(0.5)  # without require_both: the mean


def test_distress_rejects_a_top_class_happy_distribution():
    weights = dict.fromkeys(("angry", "disgust", "fear", "sad"), 1.0)
    laugh = {"angry": 0.1, "disgust": 0.02, "fear": 0.2, "happy": 0.35, "sad": 0.28, "surprise": 0.03, "neutral": 0.02}
    assert sum(laugh[k] for k in weights) == pytest.approx(0.6)  # the plain sum would reach raise_at
    assert distress_score(laugh, weights, top_only=True) == 0.0
    assert distress_score(laugh, weights, top_only=False) == pytest.approx(0.6)
    crying = {**laugh, "happy": 0.05, "sad": 0.58}
    assert distress_score(crying, weights) == pytest.approx(0.9)
    assert distress_score(crying, {**weights, "sad": 0.5}) == pytest.approx(0.61)


def test_distress_weights_are_checked():
    with pytest.raises(ConfigError, match=r"signals\.distress_weights: .*weights must be in \[0, 1\]: sad"):
        parse_config({"signals": {"distress_weights": {"sad": 2.0}}})
    cfg = parse_config({"signals": {"distress_weights": {"anger": 1.0}}})
    with pytest.raises(ConfigError, match=r"signals\.distress_weights: anger not among the model.s labels"):
        Monitor(cfg, LABELS)


def face(track: int, side: int, happy: float = 0.0) -> FaceResult:
    probs = np.full(7, (1 - happy) / 6, np.float32)
    probs[3] = happy
    return FaceResult(track, (10, 10, side, side), "x", float(probs.max()), probs, probs,
                      np.zeros((48, 48), np.uint8), None)  # type: ignore[arg-type]


def test_subject_policy_skips_faces_too_small_to_judge():
    monitor = Monitor(AppConfig(alerts={"profile": "driver", "min_face_px": 48}), LABELS)
    assert monitor.watched([face(1, 40), face(2, 30)]) == []
    assert [f.track_id for f in monitor.watched([face(1, 40), face(2, 120), face(3, 60)])] == [2]
    everyone = Monitor(AppConfig(alerts={"profile": "driver", "subject": "all", "min_face_px": 48}), LABELS)
    assert [f.track_id for f in everyone.watched([face(1, 40), face(2, 120), face(3, 60)])] == [2, 3]


def test_the_subject_keeps_the_watch_while_in_view():
    monitor = Monitor(AppConfig(alerts={"profile": "driver"}), LABELS)
    assert [f.track_id for f in monitor.watched([face(1, 120)])] == [1]
    assert [f.track_id for f in monitor.watched([face(1, 120), face(2, 240)])] == [1]  # a larger false face
    assert [f.track_id for f in monitor.watched([face(2, 240)])] == [2]  # the subject left view
    assert [f.track_id for f in monitor.watched([face(1, 120), face(2, 240)])] == [2]


def test_laughing_face_with_narrowed_eyes_raises_no_microsleep():
    """A confidently happy face whose eyes read closed (0.85) for 5 s: unknown eyes, no alert; the same
    readings on a neutral face raise the microsleep alarm."""
    for happy, expected in ((0.95, []), (0.0, ["microsleep"])):
        # No open sighting is possible on noise: the sighting rule is off to isolate the smile gate.
        monitor = Monitor(AppConfig(alerts={"profile": "driver"},
                                    eyes={"min_face_px": 0, "require_open_sighting": False}), LABELS)
        monitor.eyes.classifier = FixedEyes(0.85)  # type: ignore[union-attr]
        raised = []
        grey = textured()
        for i in range(75):
            result = FrameResult(Frame(grey, i / 15, i), [face(1, 160, happy)], True, [1])
            update = monitor.update(result)
            raised += [e["rule"] for e in update.events if e["action"] == "raised"]
        assert raised == expected
        state = (update.subjects[1]["eye_state"], update.subjects[1]["eye_unknown_reason"])
        assert state == (("unknown", "smile") if happy else ("closed", None))


def test_benchmark_runs_show_the_closed_head_exactly_during_its_span():
    """The alert benchmark's sequence assembly (scripts/real_face_sequences.py) on generated faces."""
    import sys

    sys.path.insert(0, str(MODELS.parent / "scripts"))
    from real_face_sequences import FRAME_H, FRAME_W, Run, frames

    from train.eye_composites import paste_eyes, upscale_head

    rng = np.random.default_rng(0)
    head = upscale_head(rng.integers(0, 256, (48, 48), dtype=np.uint8), 120)
    assert head.shape == (170, 170)  # 48 + 2 x 10 padding, scaled so the face is 120 px
    eyes = [(30, 40, 24, 24), (90, 40, 24, 24)]
    pattern = np.tile(np.array([0, 255], np.uint8), (24, 12))  # a striped "closed eye", mean matched on paste
    shut = paste_eyes(head, eyes, [pattern] * 2, 120)
    changed = np.argwhere(shut != head)
    assert changed.size and changed[:, 0].max() < 80  # only the eye band changed
    runs = [Run(head, None, 120, 1.0, None, "happy", 0), Run(head, shut, 120, 2.0, (0.5, 1.5), "closed", 1)]
    seen = [(round(t, 3), rt, run.label) for t, grey, run, rt in frames(runs, 10.0, rng)]
    assert len(seen) == 30 and seen[10][:2] == (1.0, 0.0) and seen[-1][0] == 2.9
    # The same runs without the closed head, drawn from the same seed, differ exactly inside the span.
    never = [runs[0], Run(head, None, 120, 2.0, (0.5, 1.5), "closed", 1)]
    for (t, a, run, rt), (_, b, _, _) in zip(frames(runs, 10.0, np.random.default_rng(1)),
                                             frames(never, 10.0, np.random.default_rng(1)), strict=True):
        assert a.shape == (FRAME_H, FRAME_W)
        assert (not np.array_equal(a, b)) == (run.label == "closed" and 0.5 <= rt < 1.5), (t, rt)


def test_benchmark_closures_lean_with_the_eyes_take_the_faces_skin_and_leave_no_seam():
    """The benchmark's closed-eye paste (scripts/real_face_sequences.paste_closure): a patch from a darker photo
    covers the eye, takes the skin level around it, turns with the eye line, and leaves the square's edge
    untouched."""
    import sys

    sys.path.insert(0, str(MODELS.parent / "scripts"))
    import cv2
    from real_face_sequences import CLOSURE_MARGIN, paste_closure

    from train.eye_composites import PASTE_SIDE

    head = np.full((200, 200), 180, np.uint8)
    cv2.circle(head, (60, 80), 6, 40, -1)  # two dark irises on pale skin
    cv2.circle(head, (140, 109), 6, 40, -1)  # the right eye lower: the eye line leans 20 degrees
    lid = np.full((24, 24), 60, np.uint8)  # a closed eye from a darker photo: lid skin 60, a lash line 10
    lid[13:15, 3:21] = 10
    face = 140
    side = round(PASTE_SIDE * face) + 2 * round(CLOSURE_MARGIN * face)  # the patch and its fading margin
    assert side == 48
    eyes = [(48, 68, 24, 24), (128, 97, 24, 24)]
    shut = paste_closure(head, eyes, [lid, lid], face)
    assert shut is not None
    for x, y, _, _ in eyes:
        x0, y0 = x + 12 - side // 2, y + 12 - side // 2
        square = shut[y0 : y0 + side, x0 : x0 + side].astype(int)
        before = head[y0 : y0 + side, x0 : x0 + side].astype(int)
        edge = np.concatenate([square[0] - before[0], square[-1] - before[-1], square[:, 0] - before[:, 0],
                               square[:, -1] - before[:, -1]])
        assert not edge.any()  # feathered to nothing: no seam
        assert abs(np.median(square) - 180) <= 3  # the lid is the face's skin, not the darker photo's
        assert square.min() > 100  # no part of the iris shows through
        lash = np.argwhere(square < 150)  # the lash line, 50 under the lid as in the patch
        assert len(lash) > 10
        slope = np.polyfit(lash[:, 1], lash[:, 0], 1)[0]  # rows per column
        assert abs(np.degrees(np.arctan(slope)) - 20) < 4  # leaning with the eye line
    assert paste_closure(head, [(0, 0, 8, 8), eyes[1]], [lid, lid], face) is None  # a patch past the edge


def test_hand_labels_of_the_closed_run_faces_are_consistent(tmp_path):
    """The open-photo labels the alert benchmark reads: every face called not-open was checked, and a face
    outside the checked set counts as unchecked, never as open."""
    import json
    import sys

    sys.path.insert(0, str(MODELS.parent / "scripts"))
    from real_face_sequences import load_open_photo_labels

    labels = load_open_photo_labels()
    assert len(labels.checked) == 160 and set(labels.not_open) <= labels.checked
    assert all(labels.status(r) == "not_open" for r in labels.not_open)
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"checked_rows": [1, 2], "eyes_not_open": {"2": "SHUT"}}))
    small = load_open_photo_labels(path)
    assert [small.status(r) for r in (1, 2, 3, None)] == ["open", "not_open", "unchecked", "unchecked"]


def test_closed_run_summary_counts_alarms_over_the_runs_whose_face_was_tracked_while_open():
    """A run whose face the detector never found before its closure gives the eye logic nothing to judge: the
    benchmark reports the alarms over all runs and, apart, over the runs tracked during their open seconds."""
    import sys

    sys.path.insert(0, str(MODELS.parent / "scripts"))
    from bench_alerts import summarize_closed_set
    from real_face_sequences import Run

    head = np.zeros((10, 10), np.uint8)
    runs = [Run(head, head, 100, 7.0, (3.0, 5.5), "closed", i) for i in range(3)]
    starts = [0.0, 7.0, 14.0]
    eyes = [("closed", True, "closed", s) for s in starts] + [("closed", False, "open", s) for s in starts[:2]]
    alarm = {"rule": "microsleep", "t": 3.0 + 1.5 + 0.1}
    out = {"starts": starts, "eyes": eyes, "alerts": {"driver": [alarm]}, "tracked_before_closure": {0.0, 7.0}}
    summary = summarize_closed_set(out, runs, raise_at=1.5)
    assert summary["microsleep_detected"] == "1/3"
    assert summary["face_tracked_before_closure"] == {"runs": 2, "microsleep_detected": "1/2", "within_0.5s": 1}
    assert summary["latency_after_onset_s"]["max"] == pytest.approx(0.1)
