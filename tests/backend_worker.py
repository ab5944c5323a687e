"""Run by tests/test_backends.py in a subprocess under another Keras backend (KERAS_BACKEND=jax), with
TensorFlow made unimportable, as on the GPU machine. ``python tests/backend_worker.py fit ROOT`` trains and
exports a tiny model on generated data; ``... augment`` checks the augmentation stream's properties."""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path

BLOCKED = ("tensorflow", "tf2onnx", "tf_keras")


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: no TensorFlow here)", name=name)
        return None


def augmentation_properties() -> dict[str, bool]:
    """Properties of the device pipeline's augmentation, on the current backend."""
    import keras
    import numpy as np

    from train.augment import AugmentConfig, augment_batch
    from train.pipeline import DeviceBatches

    face = np.random.default_rng(3).integers(0, 256, (1, 48, 48)).astype(np.uint8)
    images = np.repeat(face, 32, axis=0)  # one face: a batch differs only by its augmentation draws

    def batch(seed: int, epoch: int, index: int = 0) -> np.ndarray:
        ds = DeviceBatches(images, np.zeros((32, 7), np.float32), np.ones(32, np.float32), 16,
                           augment=AugmentConfig(), seed=seed)
        ds.epoch = epoch
        return keras.ops.convert_to_numpy(ds[index][0])

    e0, e1 = batch(11, 0), batch(11, 1)
    x = images[:8, ..., None].astype(np.float32)
    a1, a2 = (keras.ops.convert_to_numpy(augment_batch(x, AugmentConfig(), [5, 6])) for _ in range(2))
    return {
        "epochs_differ": not np.allclose(e0, e1),
        "batches_differ": not np.allclose(e0, batch(11, 0, 1)),
        "images_in_batch_differ": not np.allclose(e0[0], e0[1]),
        "seed_reproduces": bool(np.array_equal(batch(11, 1), e1)),
        "seeds_differ": not np.allclose(batch(12, 0), e0),
        "augment_batch_reproduces": bool(np.array_equal(a1, a2)),
        "in_range": bool(e0.min() >= 0.0 and e0.max() <= 255.0 and e0.shape == (16, 48, 48, 1)),
    }


def fit(root: Path) -> dict:
    """Train 5 epochs, resume to 6, export; save the model's probabilities on fixed inputs."""
    import numpy as np
    from conftest import TINY_ARCH, fer_rows, write_fer_csv

    from train.cli import main

    data = root / "data" / "fer2013"
    data.mkdir(parents=True, exist_ok=True)
    write_fer_csv(data / "fer2013.csv.gz", rows=fer_rows({"Training": 280, "PublicTest": 70, "PrivateTest": 140}))
    common = ["fit", "--data", str(root / "data"), "--run-dir", str(root / "run"), "--out", str(root / "models"),
              "--name", "tiny", "--batch-size", "16", "--lr", "0.02", "--warmup-epochs", "0", "--label-smoothing",
              "0", "--arch-kwargs", json.dumps(TINY_ARCH), "--cache-dir", str(root / "cache")]
    assert main([*common, "--epochs", "5"]) == 0
    state = json.loads((root / "run" / "state.json").read_text())
    state["config"]["epochs"] = 6  # as if started for 6 epochs and stopped after 5
    (root / "run" / "state.json").write_text(json.dumps(state))
    assert main([*common, "--resume"]) == 0

    import keras

    model = keras.models.load_model(root / "models" / "tiny.keras", compile=False)
    probe = np.random.default_rng(9).integers(0, 256, (16, 48, 48, 1)).astype(np.float32)
    np.save(root / "probe.npy", probe)
    np.save(root / "jax_probs.npy", keras.ops.convert_to_numpy(model(probe, training=False)))
    return {"backend": keras.backend.backend(), "tensorflow_imported": "tensorflow" in sys.modules,
            "state": json.loads((root / "run" / "state.json").read_text())}


if __name__ == "__main__":
    sys.meta_path.insert(0, _NoTensorFlow())
    sys.path.insert(0, str(Path(__file__).parent))
    result = augmentation_properties() if sys.argv[1] == "augment" else fit(Path(sys.argv[2]))
    print("RESULT " + json.dumps(result))
