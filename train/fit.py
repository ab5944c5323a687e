"""Training on any Keras 3 backend: input, augmentation, schedule, per-epoch checkpoints and ``--resume``.

Under TensorFlow the input is a ``tf.data`` pipeline (the faster choice on CPU); under JAX (and any other
backend) the data set sits on the accelerator and batches are built there (``train.pipeline``). The model,
augmentation and losses are ``keras``/``keras.ops`` code shared by both.

A run directory holds everything needed to continue a stopped run on another day or machine:
``last.keras`` (model + optimizer state, saved every epoch), ``best.keras`` (best PublicTest
accuracy so far), ``state.json`` (epoch, best score, the run's config) and ``history.csv``.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edge.contract import ModelCard, sha256_file
from train.augment import AugmentConfig, augment_with
from train.datasets import EYE_DATASETS, Dataset, SplitData
from train.rundir import RunState, snapshot_path

log = logging.getLogger(__name__)

SELECT_SPLIT = "PublicTest"
REPORT_SPLIT = "PrivateTest"


@dataclass
class FitConfig:
    name: str = "fer_edge"
    arch: str = "edgefer"
    dataset: str = "fer2013"
    epochs: int = 150
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adamw
    lr: float = 0.05
    weight_decay: float = 5e-4
    warmup_epochs: int = 3
    schedule: str = "cosine"  # cosine | plateau
    label_smoothing: float = 0.1
    soft_labels: bool = False  # FER+ vote distributions as targets
    class_weight: str = "none"  # none | balanced | sqrt
    patience: int = 0  # early stopping on PublicTest accuracy; 0 = off
    seed: int = 1234
    limit: int = 0  # use only the first N training rows (smoke tests); 0 = all
    teachers: list[str] = field(default_factory=list)  # .keras models to distil from (probabilities averaged)
    kd_alpha: float = 0.7  # weight of the teacher's distribution in the training target
    kd_temperature: float = 3.0  # softens the teacher's distribution (p ** (1/T), renormalized)
    snapshots: int = 0  # keep the weights of the last N epochs in snapshots/ for `fer-train average`
    init_from: str = ""  # .keras model of the same architecture whose weights start the run (warm restart)
    kd_targets: str = "online"  # online: teachers see each augmented batch | precomputed: once per clean face
    mixed_precision: bool = True  # on a GPU: float16 (TF) or bfloat16 (JAX) compute, float32 weights
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        data = dict(data)
        if "augment" in data and isinstance(data["augment"], dict):
            data["augment"] = augment_with(AugmentConfig(), data["augment"])
        return cls(**data)


def _targets(split: SplitData, num_classes: int, soft: bool) -> np.ndarray:
    if soft and split.soft is not None:
        return split.soft.astype(np.float32)
    return np.eye(num_classes, dtype=np.float32)[split.labels]


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    if mode == "none":
        return np.ones(num_classes, np.float32)
    weights = counts.sum() / (num_classes * counts)
    if mode == "sqrt":
        weights = np.sqrt(weights)
    elif mode != "balanced":
        raise ValueError(f"class_weight must be none, balanced or sqrt, not {mode!r}")
    return (weights / weights[np.argmax(counts)] if mode == "sqrt" else weights).astype(np.float32)


def teacher_targets(teachers, x, y, alpha: float, temperature: float):
    """Mix the label target with the teachers' softened, flip-averaged distribution on this very batch.

    The teachers see the same augmented images as the student, so the target follows the crop,
    rotation or erasing actually applied (online distillation, no stored logits).
    """
    from train.pipeline import mix_targets, soften, teacher_probs

    return mix_targets(y, soften(teacher_probs(teachers, x), temperature), alpha)


def random_stream_seed(seed: int, start_epoch: int) -> int:
    """The seed for the shuffle and augmentation stream of a run segment that starts at ``start_epoch``.

    A fresh run uses ``seed`` itself. A resumed run gets a different stream: reseeding with ``seed`` alone
    would replay the shuffle order of epochs 1, 2, ... (and augmentations drawn from the same seed) after
    every resume. Continuing the uninterrupted stream exactly would mean drawing every skipped epoch's
    random numbers again.
    """
    return seed if start_epoch == 0 else (seed + 7919 * start_epoch) % 2**31


def make_tf_dataset(images, targets, weights, batch_size: int, *, training: bool, augment: AugmentConfig, seed: int,
                    teachers=None, kd_alpha: float = 0.0, kd_temperature: float = 1.0):
    import tensorflow as tf

    from train.augment import augment_batch

    ds = tf.data.Dataset.from_tensor_slices((images, targets, weights))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=training)
    if not training:
        return ds.map(lambda x, y, w: (tf.cast(x, tf.float32)[..., None], y, w)).prefetch(tf.data.AUTOTUNE)

    # One augmentation seed per batch, a new sequence every epoch (see train.augment).
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def prepare(batch, aug_seed):
        x, y, w = batch
        x = augment_batch(tf.cast(x, tf.float32)[..., None], augment, aug_seed)
        if teachers:
            y = teacher_targets(teachers, x, y, kd_alpha, kd_temperature)
        return x, y, w

    return (tf.data.Dataset.zip((ds, seeds)).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def _register_schedule():
    import keras

    @keras.saving.register_keras_serializable(package="fer_edge")
    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        """Linear warm-up, then cosine decay to ``floor * peak`` at ``total_steps``."""

        def __init__(self, peak: float, warmup_steps: int, total_steps: int, floor: float = 0.0):
            self.peak, self.warmup_steps, self.total_steps, self.floor = peak, warmup_steps, total_steps, floor

        def __call__(self, step):
            step = keras.ops.cast(step, "float32")
            warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
            progress = keras.ops.clip((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 0, 1)
            cosine = self.peak * (self.floor + (1 - self.floor) * 0.5 * (1 + keras.ops.cos(math.pi * progress)))
            return keras.ops.where(step < self.warmup_steps, warm, cosine)

        def get_config(self):
            return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                    "total_steps": self.total_steps, "floor": self.floor}

    return WarmupCosine


WarmupCosine = None  # set on first use (needs keras imported)


def _schedule_class():
    """The registered schedule class; registering it first lets checkpoints that use it load."""
    global WarmupCosine
    if WarmupCosine is None:
        WarmupCosine = _register_schedule()
    return WarmupCosine


def _optimizer(cfg: FitConfig, steps_per_epoch: int):
    import keras

    if cfg.schedule == "cosine":
        lr = _schedule_class()(cfg.lr, cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch)
    elif cfg.schedule == "plateau":
        lr = cfg.lr
    else:
        raise ValueError(f"schedule must be cosine or plateau, not {cfg.schedule!r}")
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be sgd or adamw, not {cfg.optimizer!r}")


def _load_trained(path: str, role: str) -> Any:
    """A trained model given on the command line (a teacher, a start point), or an error naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: {role} model not found")
    return load_run_model(Path(path))


def load_teacher(path: str, num_classes: int):
    teacher = _load_trained(path, "teacher")
    if teacher.output_shape[-1] != num_classes:
        raise ValueError(f"{path}: teacher has {teacher.output_shape[-1]} outputs, the data set {num_classes} classes")
    teacher.trainable = False
    log.info("distilling from %s (%d parameters)", path, teacher.count_params())
    return teacher


HEAD_LAYERS = ("logits", "class_conv")  # the layers whose width is the class count (see train.models)


def _source_labels(path: str) -> tuple[str, ...] | None:
    """The label list on the card beside a trained model, if it has a readable one."""
    from edge.contract import ModelCard, ModelCardError, card_path_for

    try:
        return tuple(ModelCard.load(card_path_for(path)).labels)
    except (OSError, ModelCardError, ValueError):
        return None


def _pair_layers(model, source, path: str) -> tuple[list, list]:
    """(layer, source layer) pairs: those that fit exactly, and classifier layers that differ only in width."""
    misfit = ValueError(f"{path}: its {len(source.weights)} weight tensors do not fit this architecture's "
                        f"{len(model.weights)} (train the same --arch and --arch-kwargs)")
    theirs_by_name = {layer.name: layer for layer in source.layers}
    exact, heads = [], []
    for layer in (layer for layer in model.layers if layer.weights):
        theirs = theirs_by_name.get(layer.name)
        if theirs is None or len(theirs.weights) != len(layer.weights):
            raise misfit
        shapes = [(tuple(a.shape), tuple(b.shape)) for a, b in zip(layer.weights, theirs.weights, strict=True)]
        if all(mine == old for mine, old in shapes):
            exact.append((layer, theirs))
        elif layer.name in HEAD_LAYERS and all(mine[:-1] == old[:-1] for mine, old in shapes):
            heads.append((layer, theirs))
        else:
            raise misfit
    if len(exact) + len(heads) != sum(1 for layer in source.layers if layer.weights):
        raise misfit
    return exact, heads


def load_initial_weights(model, path: str, labels: tuple[str, ...] | None = None) -> str:
    """Start ``model`` from the weights of a trained model of the same architecture (a warm restart).

    When only the class count differs (FER2013's 7 to FER+'s 8), everything but the classifier layer
    is copied: a backbone warm start. If the card beside the source lists labels that begin ``labels``
    (FER+ appends contempt to FER2013's order), those classes' classifier columns are copied too and
    only the new classes start fresh.
    Returns the file's sha256: the path may later hold another model, the hash pins this run's start.
    """
    source = _load_trained(path, "--init-from")
    exact, heads = _pair_layers(model, source, path)
    for layer, theirs in exact:
        layer.set_weights(theirs.get_weights())
    if not heads:
        log.info("starting from the weights of %s", path)
        return sha256_file(path)
    old_count, new_count = source.output_shape[-1], model.output_shape[-1]
    names = ", ".join(layer.name for layer, _ in heads)
    if labels is not None and len(labels) >= old_count and _source_labels(path) == tuple(labels[:old_count]):
        for layer, theirs in heads:
            layer.set_weights([np.concatenate([old[..., :old_count], mine[..., old_count:]], axis=-1)
                               for mine, old in zip(layer.get_weights(), theirs.get_weights(), strict=True)])
        log.info("starting from the weights of %s (%d -> %d classes): classifier %s keeps its %d shared classes, "
                 "new classes (%s) start fresh", path, old_count, new_count, names, old_count,
                 ", ".join(labels[old_count:]))
    else:
        log.info("starting from the weights of %s except its classifier %s (%d -> %d classes), which starts fresh",
                 path, names, old_count, new_count)
    return sha256_file(path)


def accelerators() -> list[str]:
    """The backend's GPU/TPU devices (``keras.distribution`` names, e.g. ``gpu:0``); empty on a CPU."""
    import keras

    return [d for d in keras.distribution.list_devices() if not d.lower().startswith("cpu")]


def device_label() -> str:
    import keras

    found = accelerators()
    backend = keras.backend.backend()
    return f"GPU x{len(found)} ({backend})" if found else f"CPU x{os.cpu_count()} ({backend})"


def _strategy(mixed_precision: bool = True):
    """Scope for building the model: data-parallel over several accelerators, mixed precision on them.

    Several devices train data-parallel through ``keras.distribution.DataParallel`` (JAX); TensorFlow keeps
    its own ``MirroredStrategy``, the scope Keras models need under that backend.
    """
    import contextlib

    import keras

    found = accelerators()
    if found and mixed_precision:
        keras.mixed_precision.set_global_policy(
            "mixed_float16" if keras.backend.backend() == "tensorflow" else "mixed_bfloat16")
    log.info("training on %s%s", device_label(), ", mixed precision" if found and mixed_precision else "")
    if len(found) <= 1:
        return contextlib.nullcontext()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=found))
    log.info("data parallel over %s", ", ".join(found))
    return contextlib.nullcontext()


def _epoch_callback(run_dir: Path, state: RunState, patience: int, snapshot_from: int):
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        """Saves last.keras every epoch and best.keras on a new best PublicTest accuracy."""

        def __init__(self):
            super().__init__()
            self.best = float(state.data.get("best_val_accuracy", -1.0))
            self.best_epoch = int(state.data.get("best_epoch", -1))
            self.epoch_started = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = time.monotonic() - self.epoch_started
            acc = float(logs.get("val_accuracy", -1.0))
            if acc > self.best:
                self.best, self.best_epoch = acc, epoch + 1
                self.model.save(run_dir / "best.tmp.keras")
                (run_dir / "best.tmp.keras").replace(run_dir / "best.keras")
            self.model.save(run_dir / "last.tmp.keras")
            (run_dir / "last.tmp.keras").replace(run_dir / "last.keras")
            if epoch + 1 >= snapshot_from:
                snapshot = snapshot_path(run_dir, epoch + 1)
                snapshot.parent.mkdir(exist_ok=True)
                self.model.save(snapshot)
            times = [*state.data.get("epoch_seconds", []), round(seconds, 1)]
            state.save(epoch=epoch + 1, best_val_accuracy=self.best, best_epoch=self.best_epoch, epoch_seconds=times)
            log.info("epoch %d: val_accuracy %.4f (best %.4f at %d), %.0f s",
                     epoch + 1, acc, self.best, self.best_epoch, seconds)
            if patience and epoch + 1 - self.best_epoch >= patience:
                log.info("early stop: no PublicTest improvement for %d epochs", patience)
                self.model.stop_training = True

    return EpochCheckpoint()


def _time_budget(seconds: float):
    import keras

    class TimeBudget(keras.callbacks.Callback):
        """Stops at an epoch end when one more epoch (the slowest so far) would overrun ``seconds``."""

        def __init__(self):
            super().__init__()
            self.started = time.monotonic()
            self.epoch_started = self.started
            self.slowest = 0.0
            self.stopped = False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            now = time.monotonic()
            self.slowest = max(self.slowest, now - self.epoch_started)
            if now - self.started + self.slowest > seconds:
                log.info("time budget of %.0f s reached after epoch %d; --resume continues", seconds, epoch + 1)
                self.model.stop_training = self.stopped = True

    return TimeBudget()


def train(
    cfg: FitConfig,
    dataset: Dataset,
    run_dir: str | Path,
    *,
    resume: bool = False,
    new_horizon: int | None = None,
    verbose: int | None = None,
    time_limit_s: float | None = None,
) -> Path:
    """Train (or continue) a run. Returns the run directory; ``best.keras`` holds the selected model.

    ``new_horizon`` (with ``resume``) moves the end of the run to that many epochs: the saved config and the
    optimizer's cosine schedule are updated, so the remaining epochs anneal to the new end.
    ``time_limit_s`` stops the run after the last epoch that is expected to end within that many seconds
    (a window on a borrowed GPU); ``--resume`` continues it.
    """
    import keras

    from train.models import build_model

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(run_dir)
    if resume:
        if not (run_dir / "last.keras").is_file():
            raise FileNotFoundError(f"{run_dir}: nothing to resume (no last.keras); start without --resume")
        saved = FitConfig.from_dict(state.data["config"])
        if saved.to_dict() != cfg.to_dict():
            log.info("resuming with the run's saved config (command-line options ignored)")
        cfg = saved
        if new_horizon is not None and new_horizon != cfg.epochs:
            if new_horizon <= int(state.data.get("epoch", 0)):
                raise ValueError(f"--epochs {new_horizon}: the run is already at epoch {state.data.get('epoch')}")
            log.info("moving the end of the run from epoch %d to %d", cfg.epochs, new_horizon)
            cfg.epochs = new_horizon
            state.save(config=cfg.to_dict())
    elif (run_dir / "last.keras").is_file():
        raise FileExistsError(f"{run_dir}: a run exists here; pass --resume to continue it or choose another --run-dir")

    initial_epoch = int(state.data["epoch"]) if resume else 0
    stream_seed = random_stream_seed(cfg.seed, initial_epoch)
    keras.utils.set_random_seed(stream_seed)
    num_classes = len(dataset.labels)
    train_split = dataset.split("Training")
    select_split = dataset.split(SELECT_SPLIT)
    if cfg.limit:
        rng = np.random.default_rng(cfg.seed)
        pick = rng.permutation(len(train_split))[: cfg.limit]
        train_split = SplitData(train_split.images[pick], train_split.labels[pick],
                                None if train_split.soft is None else train_split.soft[pick])
    weights = class_weights(train_split.labels, num_classes, cfg.class_weight)
    steps_per_epoch = len(train_split) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {len(train_split)} training rows")
    if cfg.kd_targets not in ("online", "precomputed"):
        raise ValueError(f"kd_targets must be online or precomputed, not {cfg.kd_targets!r}")

    strategy = _strategy(cfg.mixed_precision)  # before any data or teacher reaches the devices
    train_targets = _targets(train_split, num_classes, cfg.soft_labels)
    teachers = [load_teacher(path, num_classes) for path in cfg.teachers]
    if teachers and cfg.kd_targets == "precomputed":
        from train.pipeline import mix_targets, precompute_soft_targets

        soft = precompute_soft_targets(teachers, train_split.images, cfg.kd_temperature)
        train_targets = np.asarray(keras.ops.convert_to_numpy(mix_targets(train_targets, soft, cfg.kd_alpha)))
        log.info("precomputed the teachers' targets on %d training faces", len(train_targets))
        teachers = []
    select_targets = _targets(select_split, num_classes, False)
    fit_kwargs: dict[str, Any] = {}
    if keras.backend.backend() == "tensorflow":
        train_ds = make_tf_dataset(
            train_split.images, train_targets, weights[train_split.labels],
            cfg.batch_size, training=True, augment=cfg.augment, seed=stream_seed,
            teachers=teachers, kd_alpha=cfg.kd_alpha, kd_temperature=cfg.kd_temperature,
        )
        val_ds = make_tf_dataset(select_split.images, select_targets, np.ones(len(select_split), np.float32),
                                 256, training=False, augment=cfg.augment, seed=cfg.seed)
        extra_callbacks = []
    else:
        from train.pipeline import DeviceBatches, epoch_setter

        train_ds = DeviceBatches(train_split.images, train_targets, weights[train_split.labels], cfg.batch_size,
                                 augment=cfg.augment, seed=stream_seed, teachers=teachers, kd_alpha=cfg.kd_alpha,
                                 kd_temperature=cfg.kd_temperature, epoch=initial_epoch)
        val_ds = (select_split.images.astype(np.float32)[..., None], select_targets)
        fit_kwargs = {"validation_batch_size": 256, "shuffle": False}
        extra_callbacks = [epoch_setter(train_ds)]

    with strategy:
        if resume:
            _schedule_class()
            model = keras.models.load_model(run_dir / "last.keras")
            schedule = getattr(model.optimizer, "_learning_rate", None)
            if cfg.schedule == "cosine" and hasattr(schedule, "total_steps"):
                schedule.total_steps = cfg.epochs * steps_per_epoch
            log.info("resuming %s at epoch %d of %d", run_dir, initial_epoch, cfg.epochs)
        else:
            model = build_model(cfg.arch, num_classes, dataset.splits["Training"].images.shape[1], **cfg.arch_kwargs)
            init_from_sha256 = (load_initial_weights(model, cfg.init_from, tuple(dataset.labels))
                                if cfg.init_from else None)
            model.compile(
                optimizer=_optimizer(cfg, steps_per_epoch),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            )
            state.save(config=cfg.to_dict(), epoch=0, labels=list(dataset.labels), dataset=dataset.name,
                       source=dataset.source, parameters=int(model.count_params()),
                       started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                       device=device_label(),
                       init_from_sha256=init_from_sha256)
    if initial_epoch >= cfg.epochs:
        log.info("run already finished (%d epochs)", initial_epoch)
        return run_dir

    callbacks = [*extra_callbacks, keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resume),
                 _epoch_callback(run_dir, state, cfg.patience, snapshot_from=cfg.epochs - cfg.snapshots + 1)]
    budget = _time_budget(time_limit_s) if time_limit_s is not None else None
    if budget is not None:
        callbacks.append(budget)
    if cfg.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau("val_accuracy", factor=0.5, patience=8, mode="max"))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=initial_epoch,
              callbacks=callbacks, verbose=verbose, **fit_kwargs)
    if budget is None or not budget.stopped:
        state.save(finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return run_dir


def load_run_model(path: Path) -> Any:
    """A checkpoint of a run (its optimizer's schedule class registered first), without compiling."""
    import keras

    _schedule_class()
    return keras.models.load_model(path, compile=False)


def export_model(run_dir: Path, out_path: Path) -> Any:
    """Load ``best.keras`` and save an inference-only copy (no optimizer state) at ``out_path``."""
    import keras

    trained = load_run_model(run_dir / "best.keras")
    clean = keras.models.clone_model(trained)
    clean.set_weights(trained.get_weights())
    out_path.parent.mkdir(parents=True, exist_ok=True)
    clean.save(out_path)
    return clean


def card_for_run(run_dir: Path, model, dataset: Dataset) -> ModelCard:
    from edge.contract import InputSpec
    from train.models import count_macs

    state = RunState(run_dir).data
    cfg = state["config"]
    size = int(model.input_shape[1])
    training = {"config": cfg, "epochs_run": state.get("epoch"), "best_epoch": state.get("best_epoch"),
                "selected": state.get("best_source", f"checkpoint of epoch {state.get('best_epoch')}"),
                "epoch_seconds_median": round(float(np.median(state["epoch_seconds"])), 1) if state.get("epoch_seconds")
                else None,
                "device": state.get("device"), "macs": count_macs(model)}
    if cfg.get("init_from"):
        training["init_from"] = {"path": cfg["init_from"], "sha256": state.get("init_from_sha256")}
    return ModelCard(
        name=cfg["name"],
        architecture=cfg["arch"],
        labels=list(dataset.labels),
        input=InputSpec(height=size, width=size),
        parameters=int(model.count_params()),
        task="eye_state" if dataset.name in EYE_DATASETS else "expression",
        data={"dataset": dataset.name, "source": Path(dataset.source).name, "train_split": "Training",
              "select_split": SELECT_SPLIT, "report_split": REPORT_SPLIT if REPORT_SPLIT in dataset.splits else None,
              "counts": dataset.class_counts()},
        training=training,
    )
