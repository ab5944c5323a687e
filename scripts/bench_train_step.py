"""Training speed of one architecture per Keras backend, side by side, on this machine's devices.

    python scripts/bench_train_step.py                          # edgefer, batch 64, TF and JAX
    python scripts/bench_train_step.py --teacher models/teachers/fer_edge_teacher.keras   # + distillation

Each backend runs in its own process with the input pipeline `fer-train fit` uses there (tf.data under
TensorFlow, device-resident batches under JAX), the default augmentation and the SGD + cosine optimizer.
One epoch of ``--steps`` steps warms up (compilation); the median of the next ``--epochs`` timed epochs gives
ms/step, extrapolated to a FER2013 epoch (28,709 faces). With ``--teacher``, it also times online
distillation and the one-off pass that precomputes the teacher's targets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER_TRAIN = 28709


def measure(args: argparse.Namespace) -> dict:
    import keras
    import numpy as np

    from train.augment import AugmentConfig
    from train.fit import FitConfig, _optimizer, load_teacher, make_tf_dataset
    from train.models import build_model
    from train.pipeline import DeviceBatches, precompute_soft_targets

    rng = np.random.default_rng(0)
    n = args.steps * args.batch_size
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    targets = np.eye(7, dtype=np.float32)[rng.integers(0, 7, n)]
    weights = np.ones(n, np.float32)
    teachers = [load_teacher(args.teacher, 7)] if args.teacher else []
    result: dict = {"backend": keras.backend.backend(), "devices": keras.distribution.list_devices(),
                    "arch": args.arch, "batch_size": args.batch_size}

    def timed(teachers_: list) -> float:
        model = build_model(args.arch, 7)
        model.compile(optimizer=_optimizer(FitConfig(), args.steps),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
        if keras.backend.backend() == "tensorflow":
            data = make_tf_dataset(images, targets, weights, args.batch_size, training=True,
                                   augment=AugmentConfig(), seed=1, teachers=teachers_, kd_alpha=0.7,
                                   kd_temperature=2.0)
        else:
            data = DeviceBatches(images, targets, weights, args.batch_size, augment=AugmentConfig(), seed=1,
                                 teachers=teachers_, kd_alpha=0.7, kd_temperature=2.0)
        seconds: list[float] = []

        class Clock(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                seconds.append(time.perf_counter() - self.t)

        model.fit(data, epochs=1 + args.epochs, verbose=0, callbacks=[Clock()])
        return 1000 * float(np.median(seconds[1:])) / args.steps

    result["ms_per_step"] = round(timed([]), 1)
    if teachers:
        result["ms_per_step_online_kd"] = round(timed(teachers), 1)
        precompute_soft_targets(teachers, images[:512], 2.0)  # compile
        t = time.perf_counter()
        precompute_soft_targets(teachers, images, 2.0)
        result["precompute_s_per_fer_epoch"] = round((time.perf_counter() - t) * FER_TRAIN / n, 1)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    p.add_argument("--arch", default="edgefer")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="steps per timed epoch")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up epoch")
    p.add_argument("--teacher", default="", help="also time distillation from this .keras model")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(measure(args)))
        return 0
    rows = []
    for backend in args.backends:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        argv = [sys.executable, __file__, "--child", "--arch", args.arch, "--batch-size", str(args.batch_size),
                "--steps", str(args.steps), "--epochs", str(args.epochs), "--teacher", args.teacher]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(f"{backend}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(line.removeprefix("RESULT ")))
    steps = FER_TRAIN // args.batch_size
    print(f"| backend | devices | ms/step | s/epoch (x{steps} steps, extrapolated) | online KD ms/step "
          f"| precompute s/epoch |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        kd = r.get("ms_per_step_online_kd")
        epoch_s = r["ms_per_step"] * steps / 1000
        print(f"| {r['backend']} | {', '.join(r['devices'])} | {r['ms_per_step']} | {epoch_s:.0f} "
              f"| {kd if kd is not None else '-'} | {r.get('precompute_s_per_fer_epoch', '-')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
