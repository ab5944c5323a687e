"""The shipped model on the device runtime, the daemon on the bundled clip, and the CLI."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.config import parse_config
from edge.contract import FER2013_LABELS, ModelCard, ModelCardError
from edge.daemon import Daemon, EventWriter
from edge.golden import check_golden
from edge.vision.classifier import ModelLoadError, load_classifier, load_model_with_card
from edge.vision.detect import crop_face

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SAMPLE = ROOT / "edge" / "samples"


@pytest.fixture(scope="module")
def astronaut_face() -> np.ndarray:
    from skimage import data

    from edge.config import DetectorConfig
    from edge.vision.detect import HaarFaceDetector

    grey = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    box = HaarFaceDetector(DetectorConfig(analysis_width=512, min_size=30)).detect(grey)[0]
    return crop_face(grey, box, 48)


def test_shipped_model_card_and_labels():
    classifier, card = load_model_with_card(MODELS / "fer_edge_int8.tflite")
    assert card.labels == list(FER2013_LABELS)
    assert classifier.input_size == (48, 48) and classifier.quantized
    assert card.parameters <= 1_000_000


def test_backends_agree_on_a_real_face(astronaut_face):
    probs = {name: load_classifier(MODELS / name).predict(astronaut_face)[0]
             for name in ("fer_edge_int8.tflite", "fer_edge_float32.tflite", "fer_edge.onnx")}
    tops = {name: int(np.argmax(p)) for name, p in probs.items()}
    assert len(set(tops.values())) == 1, tops
    assert np.allclose(probs["fer_edge_float32.tflite"], probs["fer_edge.onnx"], atol=1e-4)
    assert np.abs(probs["fer_edge_int8.tflite"] - probs["fer_edge_float32.tflite"]).max() < 0.1


def test_shipped_golden_outputs_reproduce():
    classifier = load_classifier(MODELS / "fer_edge_int8.tflite")
    assert check_golden(classifier, MODELS / "fer_edge.golden.csv") == []
    assert main(["selftest"]) == 0


def test_missing_and_corrupt_models_are_clear_errors(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="model file not found"):
        load_classifier(tmp_path / "none.tflite")
    bad = tmp_path / "bad_int8.tflite"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match=r"bad_int8\.tflite: not a loadable TFLite model"):
        load_classifier(bad)
    good = tmp_path / "m_int8.tflite"
    good.write_bytes((MODELS / "fer_edge_int8.tflite").read_bytes())
    card = ModelCard.load(MODELS / "fer_edge.card.json")
    card.labels = card.labels[:5]
    card.save(tmp_path / "m.card.json")
    with pytest.raises(ModelCardError, match=r"card lists 5 labels but m_int8\.tflite has 7 outputs"):
        load_model_with_card(good)


def _daemon_config(tmp_path: Path, **overrides) -> dict:
    cfg = {
        "source": {"uri": str(SAMPLE / "astronaut.mp4"), "fps": 15},
        "classifier": {"model": str(MODELS / "fer_edge_int8.tflite")},
        "output": {"events": str(tmp_path / "events.jsonl"), "stats_interval_s": 0.01},
    }
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def _events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]


def test_daemon_on_the_sample_clip(tmp_path: Path):
    cfg = parse_config(_daemon_config(tmp_path))
    assert Daemon(cfg).run() == 0
    events = _events(tmp_path)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "stats" in kinds
    expressions = [e for e in events if e["event"] == "expression"]
    assert len(expressions) > 50
    first = expressions[0]
    assert set(first["probs"]) == set(FER2013_LABELS) and abs(sum(first["probs"].values()) - 1) < 0.01
    tracks = [e["track"] for e in expressions]
    assert max(tracks.count(t) for t in set(tracks)) >= 0.8 * len(tracks)  # one face, mostly one track
    assert events[-1]["frames"] == 120 and events[-1]["frame_errors"] == 0
    assert any(e["event"] == "source" and e["state"] == "ended" for e in events)
    # Privacy by default: the events file is the only thing written.
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]


def test_daemon_writes_annotated_video_only_when_asked(tmp_path: Path):
    cfg = parse_config(_daemon_config(tmp_path, output={"annotated_video": str(tmp_path / "out.mp4")},
                                      run={"max_frames": 20}))
    Daemon(cfg).run()
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20


def test_daemon_survives_a_failing_frame(tmp_path: Path, monkeypatch):
    daemon = Daemon(parse_config(_daemon_config(tmp_path, run={"max_frames": 30})))
    real = daemon.pipeline.process
    calls = {"n": 0}

    def sometimes_broken(frame):
        calls["n"] += 1
        if calls["n"] in (3, 4):
            raise RuntimeError("simulated runtime hiccup")
        return real(frame)

    monkeypatch.setattr(daemon.pipeline, "process", sometimes_broken)
    assert daemon.run() == 0
    stop = _events(tmp_path)[-1]
    assert stop["frame_errors"] == 2 and stop["frames"] == 30


def test_run_cli_on_the_bundled_sample(capsys):
    assert main(["run", "--max-frames", "40"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "start" and any(e["event"] == "expression" for e in lines)


def test_classify_cli(tmp_path: Path, capsys):
    from skimage import data

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    assert main(["classify", str(photo), str(tmp_path / "missing.png")]) == 2
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out[0]["faces"]) == 1 and out[0]["faces"][0]["label"] in FER2013_LABELS
    assert out[1] == {"image": str(tmp_path / "missing.png"), "error": "unreadable image or file not found"}


def test_run_cli_reports_a_missing_model(tmp_path: Path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"source:\n  uri: {SAMPLE / 'astronaut.mp4'}\nclassifier:\n  model: {tmp_path / 'x_int8.tflite'}\n")
    assert main(["run", "--config", str(cfg)]) == 2
    assert f"classifier.model: {tmp_path / 'x_int8.tflite'}: model file not found" in capsys.readouterr().err


def test_bench_cli_reports_timings(capsys):
    assert main(["bench", "--frames", "30", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frame_ms_median"] > 0 and result["classifier_us_per_face_median"] > 0
    assert result["faces_per_frame"] > 0.5


def test_event_writer_appends(tmp_path: Path):
    w = EventWriter(str(tmp_path / "e.jsonl"))
    w.write({"a": 1})
    w.close()
    w = EventWriter(str(tmp_path / "e.jsonl"))
    w.write({"b": 2})
    w.close()
    assert (tmp_path / "e.jsonl").read_text() == '{"a":1}\n{"b":2}\n'
