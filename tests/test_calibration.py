"""Probability calibration: ECE/NLL by hand, the temperature fit, the fold, and the fer-train calibrate CLI."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fer_rows, write_fer_csv

from train.calibration import (
    RECORD_KEY,
    CalibrationError,
    calibrate,
    fit_temperature,
    fold_temperature,
    logit_layer,
    predict_logits,
)
from train.probability_metrics import ece, nll, reliability_bins, softmax


def test_ece_on_a_hand_worked_example():
    # 15 bins of width 1/15. Confidences 0.9, 0.9 fall in bin 13 (0.867, 0.933]: one right, one wrong,
    # |0.5 - 0.9| * 2/4 = 0.2. 0.65 in bin 9 (0.6, 0.667], right: |1 - 0.65| / 4 = 0.0875.
    # 0.85 in bin 12 (0.8, 0.867], right: |1 - 0.85| / 4 = 0.0375. Total 0.325.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.65, 0.35], [0.15, 0.85]])
    labels = np.array([0, 1, 0, 1])
    assert ece(probs, labels) == pytest.approx(0.325)
    r = reliability_bins(probs, labels)
    assert r["count"][13] == 2 and r["count"][9] == 1 and r["count"][12] == 1 and r["count"].sum() == 4
    assert r["accuracy"][13] == pytest.approx(0.5)
    assert nll(probs, labels) == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.65, 0.85])))


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = np.tile([0.7, 0.3], (10, 1))
    labels = np.array([0] * 7 + [1] * 3)
    assert ece(probs, labels) == pytest.approx(0.0, abs=1e-12)
    assert ece(probs, np.zeros(10, int)) == pytest.approx(0.3)


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (20000, 5))
    true_t = 0.5
    p = softmax(logits / true_t)
    labels = (p.cumsum(axis=1) > rng.uniform(size=(len(p), 1))).argmax(axis=1)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.05)
    best = nll(softmax(logits / t), labels)
    assert best < nll(softmax(logits / (t * 1.1)), labels) and best < nll(softmax(logits / (t / 1.1)), labels)


def _tiny(tiny_model_dir: Path):
    import keras

    from train.datasets import load_fer2013_csv

    model = keras.models.load_model(tiny_model_dir / "models" / "tiny.keras", compile=False)
    return model, load_fer2013_csv(tiny_model_dir / "data" / "fer2013" / "fer2013.csv.gz")


def test_fold_keeps_argmax_and_lowers_nll_of_a_miscalibrated_model(tiny_model_dir: Path):
    model, dataset = _tiny(tiny_model_dir)
    head = logit_layer(model)
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 0.15, bias * 0.15])  # deliberately underconfident
    private = dataset.split("PrivateTest")
    x = private.images.astype(np.float32)[..., None]
    before = np.asarray(model.predict(x, verbose=0))
    record = calibrate(model, dataset)
    after = np.asarray(model.predict(x, verbose=0))
    assert record["temperature"] < 0.5
    assert np.array_equal(before.argmax(1), after.argmax(1))
    assert nll(after, private.labels) < nll(before, private.labels)
    assert record["after"]["PrivateTest"]["nll"] < record["before"]["PrivateTest"]["nll"]
    assert record["after"]["PrivateTest"]["ece"] < record["before"]["PrivateTest"]["ece"]
    assert after.max(1).mean() > before.max(1).mean()
    assert record["after"]["PrivateTest"]["nll"] == pytest.approx(nll(after, private.labels), abs=1e-4)


def test_fold_divides_logits_exactly(tiny_model_dir: Path):
    model, dataset = _tiny(tiny_model_dir)
    faces = dataset.split("PublicTest").images[:16]
    z = predict_logits(model, faces)
    fold_temperature(model, 0.25)
    assert np.allclose(predict_logits(model, faces), z / 0.25, atol=1e-4)
    with pytest.raises(CalibrationError):
        fold_temperature(model, 0.0)


def test_fold_works_under_the_jax_backend():
    code = """
import numpy as np, keras
from train.calibration import fold_temperature, predict_logits
from train.probability_metrics import softmax
inputs = keras.Input((8, 8, 1))
x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3, name="logits")(x)))
faces = np.random.default_rng(0).integers(0, 255, (5, 8, 8)).astype(np.uint8)
z = predict_logits(model, faces)
fold_temperature(model, 0.5)
p = model.predict(faces.astype(np.float32)[..., None], verbose=0)
assert np.allclose(p, softmax(z / 0.5), atol=1e-5), (p, softmax(z / 0.5))
print(keras.backend.backend())
"""
    pytest.importorskip("jax")
    env = {**__import__("os").environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("jax")


def test_calibrate_cli_writes_model_card_and_reliability_png(tiny_model_dir: Path, tmp_path: Path, capsys):
    from edge.contract import ModelCard
    from train.cli import main

    src = tiny_model_dir / "models"
    out = tmp_path / "cal"
    code = main(["calibrate", str(src / "tiny.keras"), "--data", str(tiny_model_dir / "data"), "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    assert "temperature" in capsys.readouterr().out
    card = ModelCard.load(out / "tiny.card.json")
    record = card.metrics[RECORD_KEY]
    assert record["fitted_on"] == "PublicTest" and record["temperature"] > 0 and record["ece_bins"] == 15
    for when in ("before", "after"):
        for split in ("PrivateTest", "PublicTest"):
            assert {"ece", "nll", "brier", "mean_top_probability"} <= set(record[when][split])
    assert record["after"]["PublicTest"]["nll"] <= record["before"]["PublicTest"]["nll"] + 1e-9
    png = out / "tiny.reliability.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and record["reliability_diagram"] == png.name
    assert card.artifacts["keras"]["file"] == "tiny.keras"
    assert not (src / "tiny.reliability.png").exists()  # --out leaves the source alone
    before = ModelCard.load(src / "tiny.card.json")
    assert RECORD_KEY not in before.metrics

    stamp = (out / "tiny.keras").stat().st_mtime_ns
    assert main(["calibrate", str(out / "tiny.keras"), "--data", str(tiny_model_dir / "data"),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "already calibrated" in capsys.readouterr().out
    assert (out / "tiny.keras").stat().st_mtime_ns == stamp
    assert json.loads((out / "tiny.card.json").read_text())["metrics"][RECORD_KEY] == record


def test_calibrate_cli_bad_input_is_one_line_exit_2(tiny_model_dir: Path, tmp_path: Path, capsys):
    from train.cli import main

    assert main(["calibrate", str(tmp_path / "missing.keras"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.keras: model not found" in err

    data = tmp_path / "data" / "fer2013"
    data.mkdir(parents=True)
    write_fer_csv(data / "fer2013.csv.gz", rows=fer_rows({"Training": 14, "PrivateTest": 14}))
    for f in ("tiny.keras", "tiny.card.json"):
        shutil.copy(tiny_model_dir / "models" / f, tmp_path)
    assert main(["calibrate", str(tmp_path / "tiny.keras"), "--data", str(tmp_path / "data"),
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no PublicTest split" in err
    assert not (tmp_path / "tiny.reliability.png").exists()

    from convert.cli import main as convert_main

    assert convert_main([str(tmp_path / "tiny.keras"), "--data", str(tmp_path / "data"), "--no-onnx",
                         "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no PublicTest split" in err and "--no-temperature" in err


def test_convert_hook_skips_calibrated_models_and_honours_the_flag(tiny_model_dir: Path, tmp_path: Path):
    from convert.cli import _calibrate_probabilities
    from edge.contract import ModelCard

    model, dataset = _tiny(tiny_model_dir)
    weights = [w.copy() for w in model.get_weights()]
    card = ModelCard.load(tiny_model_dir / "models" / "tiny.card.json")
    _calibrate_probabilities(model, card, dataset, tmp_path, skip=True)
    assert RECORD_KEY not in card.metrics and not list(tmp_path.iterdir())
    card.metrics[RECORD_KEY] = {"temperature": 0.5}
    _calibrate_probabilities(model, card, dataset, tmp_path, skip=False)
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    assert card.metrics[RECORD_KEY] == {"temperature": 0.5} and not list(tmp_path.iterdir())
    del card.metrics[RECORD_KEY]
    _calibrate_probabilities(model, card, dataset, tmp_path, skip=False)
    assert card.metrics[RECORD_KEY]["temperature"] > 0 and (tmp_path / "tiny.keras").is_file()
    assert not all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
