"""Replay on rendered clips: the full pipeline raises exactly the expected alerts, in order."""

import json
from pathlib import Path

import pytest
from clips import render_drowsy_clip

from edge.cli import main
from edge.config import AppConfig
from edge.replay import replay

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def drowsy_clip(tmp_path_factory) -> Path:
    return render_drowsy_clip(tmp_path_factory.mktemp("clips") / "drowsy.mp4")


def test_driver_alerts_on_eyes_closed_then_face_gone(drowsy_clip: Path, tmp_path: Path):
    summary = replay(drowsy_clip, "driver", AppConfig(), tmp_path)
    timeline = [(e["action"], e["rule"], e["severity"]) for e in summary["alerts"]]
    assert timeline == [
        ("raised", "microsleep", "critical"),  # 1.5 s into the closure
        ("cleared", "microsleep", "critical"),  # the face (and its track) left
        ("raised", "face_absent", "warning"),  # 3 s without a face
    ], summary["alerts"]
    times = {(e["action"], e["rule"]): e["t"] for e in summary["alerts"]}
    assert 5.5 <= times[("raised", "microsleep")] <= 5.5 + 0.5  # onset + at most 0.5 s of input time
    assert times[("cleared", "microsleep")] >= 6.0
    assert 9.0 - 0.2 <= times[("raised", "face_absent")] <= 9.0 + 0.5  # last seen ~6.0 s
    assert summary["alerts"][0]["values"]["closure_s"] >= 1.5
    data = json.loads(Path(summary["timeline"]).read_text())
    assert data["samples"][0]["eye_closed_prob"] < 0.5 < data["samples"][int(5.0 * 15)]["eye_closed_prob"]
    assert Path(summary["plot"]).stat().st_size > 10_000
    # The critical microsleep line crosses every panel at its input time.
    import cv2
    import numpy as np

    from edge.replay import _LEFT, _RIGHT, SEVERITY_BGR

    img = cv2.imread(summary["plot"])
    red_columns = np.flatnonzero((img == SEVERITY_BGR["critical"]).all(axis=2).sum(axis=0) > 100)
    expected_x = _LEFT + (img.shape[1] - _LEFT - _RIGHT) * times[("raised", "microsleep")] / summary["duration_s"]
    assert red_columns.size and np.abs(red_columns - expected_x).max() <= 1.5, (red_columns, expected_x)


def test_plot_needs_no_matplotlib(drowsy_clip: Path, tmp_path: Path, monkeypatch):
    """The device install has OpenCV but no matplotlib."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # any import of it now raises ImportError
    summary = replay(drowsy_clip, "driver", AppConfig(), tmp_path)
    assert Path(summary["plot"]).stat().st_size > 10_000


def test_perclos_panel_says_why_it_is_empty():
    from edge.config import SignalsConfig
    from edge.replay import panel_notes

    short = [{"t": i / 10, "eye_closed_prob": 0.1, "perclos": None, "distress": 0.2, "absent_s": 0.0}
             for i in range(101)]
    notes = panel_notes(short, SignalsConfig(perclos_window_s=60, perclos_min_coverage_s=20))
    assert notes == {"perclos": "PERCLOS unknown: it needs 20 s of eye time in its 60 s window; this recording "
                                "has 10.0 s of eye time in 10.0 s"}
    known = [{**s, "perclos": 0.05 if s["t"] > 5 else None} for s in short]
    assert panel_notes(known, SignalsConfig()) == {}
    faceless = [{**s, "eye_closed_prob": None, "perclos": None, "distress": None} for s in short]
    notes = panel_notes(faceless, SignalsConfig())
    assert "0.0 s of eye time" in notes["perclos"] and set(notes) == {"perclos", "eye_closed_prob", "distress"}


def test_patient_profile_stays_quiet_on_the_same_clip(drowsy_clip: Path):
    # 2 s of closed eyes is not sleep (60 s), 5 s away is not "out of view" (30 s).
    assert replay(drowsy_clip, "patient", AppConfig())["alerts"] == []


@pytest.mark.parametrize("profile", ["driver", "patient"])
def test_calm_sample_clip_raises_nothing(profile: str):
    summary = replay(ROOT / "edge" / "samples" / "astronaut.mp4", profile, AppConfig())
    assert [e for e in summary["alerts"] if e["severity"] in ("warning", "critical")] == []


def test_replay_cli(drowsy_clip: Path, tmp_path: Path, capsys):
    assert main(["replay", str(drowsy_clip), "--profile", "driver", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "raised       microsleep" in out and "alerts raised" in out
    assert "note: PERCLOS unknown: it needs 20 s of eye time in its 60 s window" in out
    assert (tmp_path / "drowsy.driver.signals.png").is_file()
    assert main(["replay", str(tmp_path / "none.mp4"), "--profile", "driver"]) == 2


def test_redetection_keeps_a_closed_eyed_face():
    """Light eyelids (no dark eye regions) defeat Haar's frontal-face search; the local relaxed search
    around the tracked box recovers the face."""
    import cv2
    import numpy as np
    from clips import astronaut_bgr

    from edge.config import DetectorConfig
    from edge.vision.detect import HaarFaceDetector

    detector = HaarFaceDetector(DetectorConfig())
    face = astronaut_bgr(eyes_closed=True, lid_shade=0.92)
    missed = recovered = 0
    for side in (360, 400, 440):
        for dx in (-10, 0, 10):
            frame = np.full((480, 640, 3), 40, np.uint8)
            x, y = (640 - side) // 2 + dx, (480 - side) // 2
            frame[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if detector.detect(grey):
                continue
            missed += 1
            previous = (x + int(side * 0.34), y + int(side * 0.13), int(side * 0.19), int(side * 0.19))
            recovered += detector.redetect(grey, previous) is not None
    assert missed >= 3 and recovered == missed
