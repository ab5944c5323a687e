"""The same training code on JAX (no TensorFlow importable) and TensorFlow: a JAX-trained model loads and
converts under TensorFlow with parity, and the augmentation stream has the same properties on both."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("jax")

WORKER = Path(__file__).with_name("backend_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _on_jax(*args: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(WORKER), *args], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_augmentation_is_seeded_and_fresh_every_epoch_on_both_backends():
    from backend_worker import augmentation_properties

    expected = dict.fromkeys(augmentation_properties(), True)
    assert augmentation_properties() == expected  # TensorFlow, this process
    assert _on_jax("augment") == expected


def test_jax_trained_model_resumes_then_loads_and_converts_under_tensorflow(tmp_path: Path):
    import keras

    from convert.cli import main as convert_main
    from edge.contract import ModelCard

    result = _on_jax("fit", str(tmp_path))
    assert result["backend"] == "jax" and not result["tensorflow_imported"]
    assert result["state"]["epoch"] == 6 and "jax" in result["state"]["device"]
    assert result["state"]["best_val_accuracy"] > 0.6  # chance is 1/7
    with open(tmp_path / "run" / "history.csv") as fh:
        assert [line.split(",")[0] for line in fh.read().splitlines()[1:]] == [str(e) for e in range(6)]

    assert keras.backend.backend() == "tensorflow"
    model = keras.models.load_model(tmp_path / "models" / "tiny.keras", compile=False)
    probs = model.predict(np.load(tmp_path / "probe.npy"), verbose=0)
    np.testing.assert_allclose(probs, np.load(tmp_path / "jax_probs.npy"), atol=1e-5)

    out = tmp_path / "converted"
    shutil.copytree(tmp_path / "models", out)
    code = convert_main([str(out / "tiny.keras"), "--data", str(tmp_path / "data"), "--calibration-size", "140",
                         "--latency-runs", "5", "--no-onnx", "--cache-dir", str(tmp_path / "cache"),
                         "--max-int8-drop", "3.0", "--min-agreement", "0.95", "--min-float-agreement", "0.97"])
    assert code == 0  # parity passed
    parity = ModelCard.load(out / "tiny.card.json").metrics["parity"]
    assert parity["int8"]["agreement_with_keras"] >= 0.95


def test_precomputed_distillation_targets_match_the_online_ones_on_clean_faces(tiny_model_dir: Path, tmp_path: Path):
    from conftest import TINY_ARCH

    from train.augment import AugmentConfig
    from train.datasets import load_fer2013_csv
    from train.fit import FitConfig, load_teacher, teacher_targets, train
    from train.pipeline import precompute_soft_targets

    teacher_path = str(tiny_model_dir / "models" / "tiny.keras")
    teacher = load_teacher(teacher_path, 7)
    images = np.random.default_rng(4).integers(0, 256, (10, 48, 48)).astype(np.uint8)
    soft = precompute_soft_targets([teacher], images, temperature=2.0, batch_size=4)
    online = teacher_targets([teacher], images[..., None].astype(np.float32), np.zeros((10, 7), np.float32),
                             alpha=1.0, temperature=2.0)
    np.testing.assert_allclose(soft, np.asarray(online), atol=1e-5)
    assert not np.allclose(soft, soft[:1])  # per face, not one distribution for all

    dataset = load_fer2013_csv(tiny_model_dir / "data" / "fer2013" / "fer2013.csv.gz")
    cfg = FitConfig(epochs=2, batch_size=16, lr=0.02, warmup_epochs=0, label_smoothing=0.0,
                    augment=AugmentConfig.none(), arch_kwargs=TINY_ARCH, teachers=[teacher_path],
                    kd_targets="precomputed", kd_temperature=2.0)
    state = json.loads((train(cfg, dataset, tmp_path / "student", verbose=0) / "state.json").read_text())
    assert state["config"]["kd_targets"] == "precomputed" and state["best_val_accuracy"] > 0.6


def test_a_time_budget_stops_at_an_epoch_end_and_leaves_the_run_resumable(tmp_path: Path):
    from conftest import TINY_ARCH, fer_rows, write_fer_csv

    from train.augment import AugmentConfig
    from train.datasets import load_fer2013_csv
    from train.fit import FitConfig, train

    dataset = load_fer2013_csv(write_fer_csv(tmp_path / "f.csv", rows=fer_rows({"Training": 64, "PublicTest": 14})))
    cfg = FitConfig(epochs=3, batch_size=16, warmup_epochs=0, augment=AugmentConfig.none(), arch_kwargs=TINY_ARCH)
    run_dir = train(cfg, dataset, tmp_path / "run", verbose=0, time_limit_s=0.01)
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 1 and "finished" not in state  # the runner resumes runs that are not finished
    train(cfg, dataset, run_dir, resume=True, verbose=0)
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 3 and "finished" in state
