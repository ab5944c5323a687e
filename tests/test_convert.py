"""Conversion of a tiny model trained in the test: int8/float TFLite, ONNX, parity, card, golden."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import fer_rows

from edge.contract import ModelCard, sha256_file, verify_artifact
from edge.golden import check_golden, golden_inputs
from edge.vision.classifier import TFLiteClassifier, load_classifier, load_model_with_card

pytestmark = pytest.mark.slow

# The 10 KB test model is scored on 140 faces: one flipped near-tie is 0.7 pp, for int8 and float artifacts
# alike. The shipped model is held to the defaults (1.0 pp, 0.98, floats 0.995) by its committed parity report,
# and to the int8 targets by scripts/bench_accuracy.py.
TINY_THRESHOLDS = ["--max-int8-drop", "3.0", "--min-agreement", "0.95", "--min-float-agreement", "0.97"]


@pytest.fixture(scope="module")
def converted(tiny_model_dir: Path, tmp_path_factory) -> Path:
    from convert.cli import main

    out = tmp_path_factory.mktemp("converted")
    for f in (tiny_model_dir / "models").iterdir():
        shutil.copy(f, out)
    code = main([str(out / "tiny.keras"), "--data", str(tiny_model_dir / "data"), "--calibration-size", "140",
                 "--latency-runs", "20", "--cache-dir", str(out / "cache"), *TINY_THRESHOLDS])
    assert code == 0
    return out


def test_all_artifacts_written_and_hashed_in_card(converted: Path):
    card = ModelCard.load(converted / "tiny.card.json")
    for key in ("keras", "float32", "float16", "int8", "onnx", "golden"):
        path = verify_artifact(card, converted, key)
        assert card.artifacts[key]["sha256"] == sha256_file(path)
        assert card.artifacts[key]["bytes"] == path.stat().st_size
    report = json.loads((converted / "tiny.parity.json").read_text())
    assert report["violations"] == [] and report["split"] == "PrivateTest"
    assert {r["artifact"] for r in report["artifacts"]} == {"keras", "float32", "float16", "int8", "onnx"}
    assert "| int8 |" in (converted / "tiny.parity.md").read_text()
    assert "pairwise logit margins" in (converted / "tiny.parity.md").read_text()
    assert "cross-layer equalization" in (converted / "tiny.parity.md").read_text()
    assert report["int8_equalization_alpha"] == 0.5
    assert report["int8_input_normalization_folded"] is True and report["int8_qat"] is None
    assert report["outputs"] == ["probabilities", "pairwise_margins"] == card.artifacts["int8"]["outputs"]
    int8_row = next(r for r in report["artifacts"] if r["artifact"] == "int8")
    assert isinstance(int8_row["top1_ties_settled"], int)
    assert card.metrics["parity"]["int8"]["agreement_with_keras"] >= 0.95


def test_int8_is_full_integer_with_raw_pixel_input(converted: Path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(converted / "tiny_int8.tflite"))
    inp = interp.get_input_details()[0]
    assert inp["dtype"] == np.uint8 and all(o["dtype"] == np.uint8 for o in interp.get_output_details())
    assert inp["quantization"] == (1.0, 0)  # raw 0-255 pixels are the quantized values
    float_ops = [d for d in interp.get_tensor_details() if d["dtype"] == np.float32]
    assert float_ops == [], [d["name"] for d in float_ops]


def test_int8_margins_head_is_fused_and_follows_the_keras_logits(converted: Path):
    """The tie-break head: clip fused into the FC (output range +-1), signs equal to the float logit gaps."""
    import keras
    from ai_edge_litert.interpreter import Interpreter
    from conftest import pattern_face

    from edge.vision.tiebreak import DEFAULT_MARGIN_SCALE, class_pairs

    interp = Interpreter(model_path=str(converted / "tiny_int8.tflite"))
    sizes = sorted(int(o["shape"][-1]) for o in interp.get_output_details())
    assert sizes == [7, 21]
    margin_out = next(o for o in interp.get_output_details() if o["shape"][-1] == 21)
    assert margin_out["quantization"][0] == pytest.approx(2 / 255, rel=0.02)  # range exactly [-1, 1]
    ops = [op["op_name"] for op in interp._get_ops_details()]
    assert ops.count("FULLY_CONNECTED") == 2 and "MINIMUM" not in ops and "MAXIMUM" not in ops

    model = keras.models.load_model(converted / "tiny.keras")
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    rng = np.random.default_rng(11)
    images = np.stack([pattern_face(i % 7, rng) for i in range(70)])
    logits = logits_model.predict(images[..., None].astype(np.float32), verbose=0)
    gaps = np.stack([logits[:, i] - logits[:, j] for i, j in class_pairs(7)], axis=1) * DEFAULT_MARGIN_SCALE
    _, margins = TFLiteClassifier(converted / "tiny_int8.tflite")._run(images)
    margins = margins.astype(int) - margin_out["quantization"][1]
    clear = np.abs(gaps) > 0.2  # well beyond int8 noise in the features
    assert clear.sum() > 100
    assert np.mean(np.sign(margins[clear]) == np.sign(gaps[clear])) >= 0.98
    # Saturated, as the clip says, for gaps well past it; the tiny model's int8 features are noisy enough that a
    # rare entry (1 of ~1,500 seen) lands short of the rail, so this asks for 99%, not every one.
    big = np.abs(gaps) > 1.5
    assert big.sum() > 100 and np.mean(np.abs(margins[big]) >= 126) >= 0.99


def test_int8_agrees_with_keras_on_structured_inputs(converted: Path):
    import keras

    model = keras.models.load_model(converted / "tiny.keras")
    rng = np.random.default_rng(7)
    from conftest import pattern_face

    images = np.stack([pattern_face(i % 7, rng) for i in range(140)])
    keras_top = model.predict(images[..., None].astype(np.float32), verbose=0).argmax(1)
    int8_top = TFLiteClassifier(converted / "tiny_int8.tflite").predict(images).argmax(1)
    assert np.mean(keras_top == int8_top) >= 0.95


def test_onnx_matches_keras_with_onnxruntime(converted: Path):
    import keras
    import onnxruntime as ort

    session = ort.InferenceSession(str(converted / "tiny.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "image"
    model = keras.models.load_model(converted / "tiny.keras")
    x = np.stack([img for _, img, _ in fer_rows({"PrivateTest": 21}, seed=3)])[..., None].astype(np.float32)
    expected = model.predict(x, verbose=0)
    got, margins = session.run(None, {"image": x})
    assert np.allclose(got, expected, atol=1e-5)
    assert margins.shape == (21, 21) and np.all(np.abs(margins) <= 1.0)
    assert np.allclose(load_classifier(converted / "tiny.onnx").predict(x[..., 0]), expected, atol=1e-5)


def test_golden_file_reproduces_with_the_edge_runtime(converted: Path):
    classifier = TFLiteClassifier(converted / "tiny_int8.tflite")
    assert check_golden(classifier, converted / "tiny.golden.csv", tolerance=0) == []
    # A changed expectation is caught.
    lines = (converted / "tiny.golden.csv").read_text().splitlines()
    name, cls, scores = lines[1].split(",")
    bumped = " ".join(str(int(v) + 5) for v in scores.split())
    broken = converted / "broken.golden.csv"
    broken.write_text("\n".join([lines[0], f"{name},{cls},{bumped}", *lines[2:]]) + "\n")
    problems = check_golden(classifier, broken)
    assert len(problems) == 1 and problems[0].startswith(name)
    assert set(golden_inputs()) >= {"black", "face_smile"}


def test_model_and_card_load_together(converted: Path):
    classifier, card = load_model_with_card(converted / "tiny_int8.tflite")
    assert classifier.num_classes == len(card.labels) == 7


def test_conversion_calibrates_first_and_reports_ece_per_artifact(converted: Path, tiny_model_dir: Path):
    card = ModelCard.load(converted / "tiny.card.json")
    record = card.metrics["probability_calibration"]
    assert record["fitted_on"] == "PublicTest" and record["temperature"] > 0
    assert (converted / "tiny.reliability.png").is_file()
    assert card.artifacts["keras"]["sha256"] == sha256_file(converted / "tiny.keras")
    assert sha256_file(converted / "tiny.keras") != sha256_file(tiny_model_dir / "models" / "tiny.keras")
    report = json.loads((converted / "tiny.parity.json").read_text())
    assert report["probability_calibration"]["temperature"] == record["temperature"]
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert set(rows) == {"keras", "float32", "float16", "int8", "onnx"}
    for row in rows.values():
        assert 0.0 <= row["ece"] <= 1.0 and row["nll"] > 0.0
    assert rows["keras"]["nll"] == pytest.approx(record["after"]["PrivateTest"]["nll"], abs=1e-3)
    assert card.metrics["parity"]["int8"]["ece"] == rows["int8"]["ece"]
    assert "| ECE | NLL |" in (converted / "tiny.parity.md").read_text()


def test_threshold_gate_exits_nonzero_naming_it(converted: Path, tiny_model_dir: Path, tmp_path, capsys):
    """The CLI gate, deterministically: an unreachable agreement threshold must fail with exit 3.

    (Bad calibration alone does not reliably break the 10 KB stripe model: black, grey, noise and
    low-contrast sets kept >= 0.97 agreement when measured, so the test does not rely on it.)
    """
    from convert.cli import main

    for f in ("tiny.keras", "tiny.card.json"):
        shutil.copy(converted / f, tmp_path)
    keras_sha = sha256_file(tmp_path / "tiny.keras")
    black = tmp_path / "black.npy"
    np.save(black, np.zeros((64, 48, 48), np.uint8))
    code = main([str(tmp_path / "tiny.keras"), "--data", str(tiny_model_dir / "data"), "--no-onnx",
                 "--calibration-data", str(black), "--latency-runs", "5", "--cache-dir", str(tmp_path / "c"),
                 "--min-agreement", "1.01", "--min-float-agreement", "1.01"])
    assert code == 3
    err = capsys.readouterr().err
    assert "threshold violated: int8 top-1 agreement" in err
    assert "threshold violated: float32 top-1 agreement" in err and "is below 1.0100" in err
    report = json.loads((tmp_path / "tiny.parity.json").read_text())
    assert report["violations"] and report["calibration"]["source"].endswith("black.npy")
    # the copied model is already calibrated: the second conversion must not fit a temperature again
    assert sha256_file(tmp_path / "tiny.keras") == keras_sha
    assert (ModelCard.load(tmp_path / "tiny.card.json").metrics["probability_calibration"]
            == ModelCard.load(converted / "tiny.card.json").metrics["probability_calibration"])
    bad_shape = tmp_path / "bad.npy"
    np.save(bad_shape, np.zeros((4, 24, 24), np.uint8))
    assert main([str(tmp_path / "tiny.keras"), "--data", str(tiny_model_dir / "data"),
                 "--calibration-data", str(bad_shape), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "calibration faces must be uint8 (N, 48, 48)" in capsys.readouterr().err


def test_threshold_rules():
    from convert.parity import Thresholds, check_thresholds

    def row(name, acc, agree):
        return {"artifact": name, "accuracy": acc, "agreement_with_keras": agree}

    ok = [row("keras", 0.70, None), row("int8", 0.695, 0.99), row("float16", 0.70, 0.999)]
    assert check_thresholds(ok, Thresholds()) == []
    bad = [row("keras", 0.70, None), row("int8", 0.68, 0.97), row("onnx", 0.70, 0.99)]
    problems = check_thresholds(bad, Thresholds())
    assert problems == ["int8 loses 2.00 pp accuracy against Keras (limit 1.00 pp)",
                        "int8 top-1 agreement 0.9700 is below 0.9800",
                        "onnx top-1 agreement 0.9900 is below 0.9950"]


def test_convert_cli_input_errors(tmp_path, capsys):
    from convert.cli import main

    assert main([str(tmp_path / "missing.keras")]) == 2
    assert "missing.keras: model not found" in capsys.readouterr().err
    (tmp_path / "m.keras").write_bytes(b"junk")
    assert main([str(tmp_path / "m.keras")]) == 2
    assert "m.card.json: model card not found" in capsys.readouterr().err


def test_cross_layer_equalization_keeps_the_float_function(tiny_model_dir: Path):
    import keras
    from conftest import pattern_face

    from convert.export import equalize_activations

    model = keras.models.load_model(tiny_model_dir / "models" / "tiny.keras")
    rng = np.random.default_rng(5)
    faces = np.stack([pattern_face(i % 7, rng) for i in range(70)])
    equalized = equalize_activations(model, faces, alpha=1.0)
    assert equalized is not None
    x = faces[..., None].astype(np.float32)
    assert np.allclose(equalized.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    # alpha 1: every channel of an equalized activation now spans the same range on the calibration faces.
    relu = next(layer for layer in equalized.layers if isinstance(layer, keras.layers.ReLU))
    acts = keras.Model(equalized.inputs, relu.output).predict(x, verbose=0)
    ranges = acts.reshape(-1, acts.shape[-1]).max(axis=0)
    live = ranges > 1e-2
    assert np.allclose(ranges[live], ranges.max(), rtol=1e-3)
    # A network without BN -> ReLU pairs is left alone.
    inputs = keras.Input((48, 48, 1))
    plain = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(7)(keras.layers.Flatten()(inputs))))
    assert equalize_activations(plain, faces) is None
