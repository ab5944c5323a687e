"""Training on tiny generated data: a loadable model with a card, resume, the CLI, the registry."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import fer_rows, write_fer_csv

from edge.contract import FER2013_LABELS, ModelCard, sha256_file
from train.augment import AugmentConfig
from train.datasets import load_fer2013_csv

pytestmark = pytest.mark.slow

from conftest import TINY_ARCH  # noqa: E402


def _cli(*args: str) -> int:
    from train.cli import main

    return main(list(args))


def test_registry_sizes():
    from train.models import REGISTRY, build_model, count_macs

    edge = build_model("edgefer", 7)
    assert edge.count_params() <= 1_000_000
    assert edge.input_shape == (None, 48, 48, 1)
    assert count_macs(edge) < 100e6
    assert 50_000 < build_model("mini_xception", 7).count_params() < 70_000
    assert {"edgefer", "mini_xception", "baseline_2block", "baseline_5conv", "eyenet"} <= set(REGISTRY)
    with pytest.raises(KeyError, match="unknown architecture 'nope'"):
        build_model("nope", 7)


def test_normalization_is_inside_the_graph():
    from train.models import build_model

    model = build_model("edgefer", 7)
    normalize = model.get_layer("normalize")
    out = normalize(np.array([[[[0.0]], [[255.0]]]], dtype=np.float32))
    assert np.allclose(np.asarray(out).ravel(), [-1.0, 1.0])


def test_augmentation_keeps_shape_and_range():
    import tensorflow as tf

    from train.augment import augment_batch

    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (16, 48, 48, 1)).astype(np.float32))
    y = augment_batch(x, AugmentConfig()).numpy()
    assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 255.0
    assert not np.allclose(x.numpy(), y)
    same = augment_batch(x, AugmentConfig.none()).numpy()
    assert np.allclose(same, x.numpy(), atol=1e-3)  # identity transform when everything is off


def test_blur_smooths_and_noise_roughens():
    from train.augment import augment_batch, augment_with

    rng = np.random.default_rng(1)
    x = np.repeat(rng.uniform(0, 255, (1, 24, 24, 1)).astype(np.float32), 32, axis=0)
    still = AugmentConfig.none()
    roughness = lambda im: float(np.abs(np.diff(im, axis=2)).mean())  # noqa: E731
    blurred = np.asarray(augment_batch(x, augment_with(still, {"blur": 1.0}), seed=[3, 4]))
    assert roughness(blurred) < 0.9 * roughness(x)
    flat = np.full((32, 24, 24, 1), 128.0, np.float32)
    noisy = np.asarray(augment_batch(flat, augment_with(still, {"noise_std": 8.0}), seed=[3, 4]))
    per_image = noisy.reshape(32, -1).std(axis=1)
    assert per_image.min() > 0 and per_image.max() <= 8.5 and per_image.std() > 0.5  # its own level per image
    with pytest.raises(ValueError, match="unknown field"):
        augment_with(still, {"blurr": 1.0})
    with pytest.raises(ValueError, match="blur"):
        augment_with(still, {"blur": 1.5})
    with pytest.raises(ValueError, match="noise_std"):
        augment_with(still, {"noise_std": "6"})


def test_fit_cli_writes_model_card_report_and_resumes(tmp_path: Path):
    import keras

    data = tmp_path / "data" / "fer2013"
    data.mkdir(parents=True)
    write_fer_csv(data / "fer2013.csv.gz", rows=fer_rows({"Training": 140, "PublicTest": 28, "PrivateTest": 28}))
    run_dir, out = tmp_path / "run", tmp_path / "models"
    common = ["fit", "--data", str(tmp_path / "data"), "--run-dir", str(run_dir), "--out", str(out),
              "--name", "tiny", "--batch-size", "16", "--lr", "0.02", "--warmup-epochs", "0",
              "--arch-kwargs", json.dumps(TINY_ARCH), "--cache-dir", str(tmp_path / "cache")]
    assert _cli(*common, "--epochs", "1") == 0

    card = ModelCard.load(out / "tiny.card.json")
    assert card.labels == list(FER2013_LABELS)
    assert card.architecture == "edgefer" and card.parameters > 0
    assert card.data["select_split"] == "PublicTest" and card.data["report_split"] == "PrivateTest"
    assert card.artifacts["keras"]["sha256"] == sha256_file(out / "tiny.keras")
    assert set(card.metrics["keras"]) == {"PublicTest", "PrivateTest"}
    for name in ("tiny.metrics.json", "tiny.confusion_PrivateTest.png", "tiny.curves.png", "tiny.history.json"):
        assert (out / name).is_file(), name
    model = keras.models.load_model(out / "tiny.keras")
    probs = model.predict(np.zeros((2, 48, 48, 1), np.float32), verbose=0)
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1.0, atol=1e-4)

    # A second plain start must not clobber the run; --resume continues it.
    assert _cli(*common, "--epochs", "1") == 2
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 1
    state["config"]["epochs"] = 3  # as if the run had been started for 3 epochs and stopped after 1
    (run_dir / "state.json").write_text(json.dumps(state))
    assert _cli(*common, "--resume") == 0
    with open(run_dir / "history.csv") as fh:
        epochs = [int(r["epoch"]) for r in csv.DictReader(fh)]
    assert epochs == [0, 1, 2]
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 3

    # --new-horizon moves the end of a resumed run; the cosine schedule in the checkpoint follows it.
    assert _cli(*common, "--resume", "--new-horizon", "--epochs", "2") == 2  # already past it
    assert _cli(*common, "--resume", "--new-horizon", "--epochs", "4") == 0
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epoch"] == 4 and state["config"]["epochs"] == 4
    from train.fit import FitConfig, _optimizer

    _optimizer(FitConfig(), 1)  # registers the schedule class for loading
    schedule = keras.models.load_model(run_dir / "last.keras").optimizer._learning_rate
    assert schedule.total_steps == 4 * (140 // 16)


def test_training_learns_the_synthetic_task(tmp_path: Path):
    from train.fit import FitConfig, train

    path = write_fer_csv(tmp_path / "f.csv", rows=fer_rows({"Training": 280, "PublicTest": 70, "PrivateTest": 7}))
    dataset = load_fer2013_csv(path)
    cfg = FitConfig(epochs=6, batch_size=16, lr=0.02, warmup_epochs=0, label_smoothing=0.0,
                    augment=AugmentConfig(max_rotation_deg=5, max_shift=0.02, erase_prob=0.0, flip=False),
                    arch_kwargs=TINY_ARCH)
    run_dir = train(cfg, dataset, tmp_path / "run", verbose=0)
    state = json.loads((run_dir / "state.json").read_text())
    assert state["best_val_accuracy"] > 0.6  # chance is 1/7


def test_a_resumed_run_draws_a_fresh_shuffle_stream():
    import keras

    from train.fit import make_tf_dataset, random_stream_seed

    images = np.zeros((64, 48, 48), np.uint8)
    targets = np.zeros((64, 7), np.float32)
    targets[:, 0] = np.arange(64)  # the target carries the row number, so a batch shows the shuffle order

    def first_batch_rows(seed: int) -> list[int]:
        keras.utils.set_random_seed(seed)  # as train() does before building the pipeline
        ds = make_tf_dataset(images, targets, np.ones(64, np.float32), 16, training=True,
                             augment=AugmentConfig(), seed=seed)
        return next(iter(ds))[1].numpy()[:, 0].astype(int).tolist()

    assert random_stream_seed(7, 0) == 7  # a fresh run keeps its seed
    fresh = first_batch_rows(random_stream_seed(7, 0))
    assert fresh == first_batch_rows(random_stream_seed(7, 0))
    # Resuming after epoch 5 must not replay epoch 1's order; resuming at another epoch differs again.
    after_5 = first_batch_rows(random_stream_seed(7, 5))
    assert after_5 != fresh
    assert first_batch_rows(random_stream_seed(7, 6)) not in (fresh, after_5)


def test_augmentation_draws_change_every_epoch_and_repeat_per_seed():
    """Each epoch augments afresh (stateful draws in Dataset.map would replay), yet a seed reproduces a run."""
    import keras

    from train.fit import make_tf_dataset

    face = np.random.default_rng(3).integers(0, 256, (1, 48, 48)).astype(np.uint8)
    images = np.repeat(face, 32, axis=0)  # one face: a batch differs only by its augmentation draws

    def pipeline(seed: int):
        keras.utils.set_random_seed(seed)
        return make_tf_dataset(images, np.zeros((32, 7), np.float32), np.ones(32, np.float32), 16,
                               training=True, augment=AugmentConfig(), seed=seed)

    ds = pipeline(11)
    epoch_1, epoch_2 = (next(iter(ds))[0].numpy() for _ in range(2))
    assert not np.allclose(epoch_1, epoch_2)
    assert not np.allclose(epoch_1[0], epoch_1[1])
    np.testing.assert_array_equal(next(iter(pipeline(11)))[0].numpy(), epoch_1)


def test_resume_without_a_run_is_a_clear_error(tmp_path: Path, fer_csv: Path):
    from train.fit import FitConfig, train

    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(FitConfig(), load_fer2013_csv(fer_csv), tmp_path / "empty", resume=True)


def test_stats_cli_prints_counts_and_writes_pngs(tmp_path: Path, capsys):
    data = tmp_path / "data" / "fer2013"
    data.mkdir(parents=True)
    write_fer_csv(data / "fer2013.csv.gz")
    assert _cli("stats", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r"),
                "--cache-dir", str(tmp_path / "c")) == 0
    out = capsys.readouterr().out
    assert "happy" in out and "Training" in out and "total" in out
    assert (tmp_path / "r" / "fer2013_class_distribution.png").stat().st_size > 1000
    assert (tmp_path / "r" / "fer2013_samples.png").stat().st_size > 1000


def test_cli_reports_bad_data_without_traceback(tmp_path: Path, capsys):
    data = tmp_path / "data" / "fer2013"
    data.mkdir(parents=True)
    write_fer_csv(data / "fer2013.csv.gz", extra_lines=["1,1 2 3,Training"])
    code = _cli("stats", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r"), "--cache-dir",
                str(tmp_path / "c"))
    assert code == 2
    assert "expected 2304 pixel values, found 3" in capsys.readouterr().err
    assert _cli("stats", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "r"), "--skip-bad",
                "--cache-dir", str(tmp_path / "c")) == 0


def test_distillation_targets_mix_label_and_softened_teacher():
    import keras
    import tensorflow as tf

    from train.fit import teacher_targets

    inputs = keras.Input((4, 4, 1))
    teacher = keras.Model(inputs, keras.layers.Lambda(
        lambda x: tf.tile(tf.constant([[0.8, 0.2]]), [tf.shape(x)[0], 1]))(inputs))
    y = tf.constant([[0.0, 1.0]])
    mixed = teacher_targets([teacher], tf.zeros((1, 4, 4, 1)), y, alpha=0.5, temperature=1.0).numpy()
    assert mixed == pytest.approx(np.array([[0.4, 0.6]]))
    soft = teacher_targets([teacher], tf.zeros((1, 4, 4, 1)), y, alpha=1.0, temperature=2.0).numpy()
    expected = np.sqrt([0.8, 0.2]) / np.sqrt([0.8, 0.2]).sum()  # p ** (1/T), renormalized
    assert soft == pytest.approx(expected[None], abs=1e-5)


def test_student_trains_from_a_teacher(tiny_model_dir: Path, tmp_path: Path):
    from train.fit import FitConfig, train

    dataset = load_fer2013_csv(tiny_model_dir / "data" / "fer2013" / "fer2013.csv.gz")
    cfg = FitConfig(epochs=4, batch_size=16, lr=0.02, warmup_epochs=0, label_smoothing=0.0,
                    augment=AugmentConfig(max_rotation_deg=5, max_shift=0.02, erase_prob=0.0, flip=False),
                    arch_kwargs=TINY_ARCH, teachers=[str(tiny_model_dir / "models" / "tiny.keras")])
    state = json.loads((train(cfg, dataset, tmp_path / "student", verbose=0) / "state.json").read_text())
    assert state["config"]["teachers"] and state["best_val_accuracy"] > 0.6
    with pytest.raises(FileNotFoundError, match="teacher model not found"):
        train(FitConfig(teachers=[str(tmp_path / "none.keras")], epochs=1), dataset, tmp_path / "x", verbose=0)


def test_evaluate_in_place_keeps_the_cards_other_results(tiny_model_dir: Path, tmp_path: Path):
    """Re-evaluating a converted model (one split, with --tta-flip) adds to its card; parity and PublicTest stay."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir / "models", models)
    card = ModelCard.load(models / "tiny.card.json")
    card.metrics["parity"] = {"int8": {"agreement_with_keras": 0.995}}  # what fer-convert adds
    card.save(models / "tiny.card.json")
    public_before = card.metrics["keras"]["PublicTest"]

    assert _cli("evaluate", str(models / "tiny.keras"), "--data", str(tiny_model_dir / "data"), "--split",
                "PrivateTest", "--tta-flip", "--cache-dir", str(tmp_path / "c")) == 0
    metrics = ModelCard.load(models / "tiny.card.json").metrics
    assert metrics["parity"] == {"int8": {"agreement_with_keras": 0.995}}
    assert metrics["keras"]["PublicTest"] == public_before
    assert set(metrics["keras_tta_flip"]) == {"PrivateTest"}
    report = json.loads((models / "tiny.metrics.json").read_text())
    assert set(report) == {"PublicTest", "PrivateTest"} and "tta_flip_summary" in report["PrivateTest"]


def test_init_from_starts_at_the_trained_weights(tiny_model_dir: Path, tmp_path: Path):
    """--init-from: a warm restart begins where the trained model is, and a misfit model is a clear error."""
    import keras

    from train.fit import FitConfig, load_initial_weights, train
    from train.models import build_model

    source_path = tiny_model_dir / "models" / "tiny.keras"
    source = keras.models.load_model(source_path, compile=False)
    fresh = build_model("edgefer", 7, **TINY_ARCH)
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 48, 1)).astype(np.float32)
    assert not np.allclose(fresh.predict(images, verbose=0), source.predict(images, verbose=0), atol=1e-3)
    load_initial_weights(fresh, str(source_path))
    np.testing.assert_allclose(fresh.predict(images, verbose=0), source.predict(images, verbose=0), atol=1e-5)

    with pytest.raises(ValueError, match="do not fit"):
        load_initial_weights(build_model("edgefer", 7, stem=8, widths=[16, 32], convs=[1, 1]), str(source_path))

    # One epoch at a tiny learning rate keeps the source model's accuracy (chance is 1/7).
    dataset = load_fer2013_csv(tiny_model_dir / "data" / "fer2013" / "fer2013.csv.gz")
    cfg = FitConfig(epochs=1, batch_size=16, lr=1e-5, warmup_epochs=0, label_smoothing=0.0,
                    augment=AugmentConfig.none(), arch_kwargs=TINY_ARCH, init_from=str(source_path))
    state = json.loads((train(cfg, dataset, tmp_path / "warm", verbose=0) / "state.json").read_text())
    assert state["config"]["init_from"] == str(source_path)
    assert state["init_from_sha256"] == sha256_file(source_path)
    assert state["best_val_accuracy"] > 0.6  # chance is 1/7
    with pytest.raises(FileNotFoundError, match="--init-from model not found"):
        train(FitConfig(init_from=str(tmp_path / "none.keras"), epochs=1), dataset, tmp_path / "x", verbose=0)


def test_init_from_another_class_count_keeps_the_backbone(tiny_model_dir: Path):
    """A 7-class model starts an 8-class (FER+) one: the backbone is copied, and the classifier keeps the
    7 FER2013 classes that FER+ shares (its card says so) while contempt starts fresh."""
    import keras

    from edge.contract import FER2013_LABELS, FERPLUS_LABELS
    from train.fit import load_initial_weights
    from train.models import build_model

    source_path = tiny_model_dir / "models" / "tiny.keras"
    source = keras.models.load_model(source_path, compile=False)
    images = np.random.default_rng(1).integers(0, 256, (8, 48, 48, 1)).astype(np.float32)

    def layer_output(model, name: str) -> np.ndarray:
        return keras.Model(model.inputs, model.get_layer(name).output).predict(images, verbose=0)

    assert FERPLUS_LABELS[:7] == FER2013_LABELS
    source_head = source.get_layer("logits").get_weights()
    for labels, shared in ((FERPLUS_LABELS, 7), (None, 0), (tuple(reversed(FERPLUS_LABELS)), 0)):
        target = build_model("edgefer", 8, **TINY_ARCH)
        fresh_head = [w.copy() for w in target.get_layer("logits").get_weights()]
        load_initial_weights(target, str(source_path), labels)
        np.testing.assert_allclose(layer_output(target, "gap"), layer_output(source, "gap"), atol=1e-5)
        for kept, fresh, old in zip(target.get_layer("logits").get_weights(), fresh_head, source_head, strict=True):
            np.testing.assert_array_equal(kept[..., shared:], fresh[..., shared:])
            np.testing.assert_array_equal(kept[..., :shared], old[..., :shared])
        if shared:  # the shared classes' logits are the source's own
            np.testing.assert_allclose(layer_output(target, "logits")[:, :shared], layer_output(source, "logits"),
                                       atol=1e-4)


def test_snapshots_average_with_recomputed_batchnorm(tmp_path: Path):
    """--snapshots keeps the last epochs; average recomputes BN exactly and is promoted only if better."""
    import keras

    from train.average import average_run, average_weights, list_snapshots, recompute_batchnorm
    from train.fit import FitConfig, train

    path = write_fer_csv(tmp_path / "f.csv", rows=fer_rows({"Training": 140, "PublicTest": 35, "PrivateTest": 7}))
    dataset = load_fer2013_csv(path)
    cfg = FitConfig(epochs=4, batch_size=16, lr=0.02, warmup_epochs=0, label_smoothing=0.0, snapshots=3,
                    augment=AugmentConfig.none(), arch_kwargs=TINY_ARCH)
    run_dir = train(cfg, dataset, tmp_path / "run", verbose=0)
    assert sorted(list_snapshots(run_dir)) == [2, 3, 4]
    assert sorted(list_snapshots(run_dir, from_epoch=3)) == [3, 4]

    # Averaging is elementwise.
    a, b = (keras.models.load_model(list_snapshots(run_dir)[e], compile=False) for e in (2, 4))
    mean = average_weights([a, b])
    assert np.allclose(mean[0], (a.get_weights()[0] + b.get_weights()[0]) / 2)

    # Recomputed BN statistics equal the statistics of the layer's input.
    images = dataset.split("Training").images
    assert recompute_batchnorm(a, images, batch_size=32) == len(
        [layer for layer in a.layers if isinstance(layer, keras.layers.BatchNormalization)])
    bn = next(layer for layer in a.layers if isinstance(layer, keras.layers.BatchNormalization))
    feats = keras.Model(a.inputs, bn.input).predict(images[..., None].astype(np.float32), verbose=0)
    assert np.allclose(bn.moving_mean.numpy(), feats.mean((0, 1, 2)), atol=1e-3)
    assert np.allclose(bn.moving_variance.numpy(), feats.var((0, 1, 2)), rtol=1e-3, atol=1e-4)

    before = (run_dir / "best.keras").read_bytes()
    result = average_run(run_dir, dataset, from_epoch=2)
    assert result["source"] == "average of epochs 2-4 (3 snapshots)"
    assert (run_dir / "averaged.keras").is_file()
    state = json.loads((run_dir / "state.json").read_text())
    if result["promoted"]:
        assert result["select_accuracy"] > result["best_single_accuracy"]
        assert (run_dir / "best_single.keras").read_bytes() == before
        assert state["best_source"] == result["source"]
    else:
        assert (run_dir / "best.keras").read_bytes() == before and "best_source" not in state
    with pytest.raises(FileNotFoundError, match="need at least 2 snapshots"):
        average_run(run_dir, dataset, from_epoch=4)
