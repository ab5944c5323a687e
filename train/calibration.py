"""Probability calibration: one temperature fitted on the selection split and folded into the classifier.

Label smoothing and distillation leave a network underconfident: its softmax spreads mass the data do
not justify. Dividing the logits by one temperature T (fitted by minimum NLL on PublicTest, Guo et al.
2017) fixes most of that without changing any argmax. The temperature is folded into the layer that
produces the logits (kernel / T, bias / T), so every artifact converted from the model inherits it and
the device needs nothing new. Metrics are NumPy; model access goes through Keras 3 only, so this runs
under the TensorFlow and JAX backends alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from train.probability_metrics import ECE_BINS, calibration_metrics, softmax

log = logging.getLogger(__name__)

RECORD_KEY = "probability_calibration"
FIT_SPLIT = "PublicTest"
REPORT_SPLITS = ("PrivateTest", "PublicTest")


class CalibrationError(ValueError):
    """The model or data set cannot be calibrated (one line, names what is missing)."""


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.02, hi: float = 50.0) -> float:
    """The temperature T minimising the NLL of softmax(logits / T).

    The NLL is convex in beta = 1/T, and its derivative mean(E_p[z] - z_y) rises monotonically, so
    bisection on the derivative over beta in [1/hi, 1/lo] finds the minimum exactly (to float precision).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(z) == 0:
        raise CalibrationError("cannot fit a temperature on an empty split")
    z_true = z[np.arange(len(z)), y]

    def slope(beta: float) -> float:
        return float(np.mean(np.sum(softmax(beta * z) * z, axis=1) - z_true))

    b_lo, b_hi = 1.0 / hi, 1.0 / lo
    if slope(b_lo) >= 0:
        return hi
    if slope(b_hi) <= 0:
        return lo
    for _ in range(100):
        mid = 0.5 * (b_lo + b_hi)
        if slope(mid) < 0:
            b_lo = mid
        else:
            b_hi = mid
    return float(1.0 / (0.5 * (b_lo + b_hi)))


# ---------------------------------------------------------------- the model (Keras 3)


def logit_layer(model):
    """The layer whose output, after linear pooling at most, feeds the model's final Softmax.

    A Dense -> Softmax head (edgefer, eyenet) or a Conv2D -> GlobalAveragePooling2D -> Softmax head
    (mini_xception); both are linear in their weights, so dividing kernel and bias by T divides the logits.
    """
    import keras

    last = model.layers[-1]
    if not isinstance(last, keras.layers.Softmax) or len(model.outputs) != 1:
        raise CalibrationError(f"{model.name}: expected one output from a final Softmax layer")
    op = last.input._keras_history.operation
    if isinstance(op, keras.layers.GlobalAveragePooling2D | keras.layers.GlobalAveragePooling1D):
        op = op.input._keras_history.operation
    if not isinstance(op, keras.layers.Dense | keras.layers.Conv2D) or op.activation is not keras.activations.linear:
        raise CalibrationError(f"{model.name}: the Softmax is not fed by a linear Dense or Conv2D layer")
    if not op.use_bias:
        raise CalibrationError(f"{model.name}: layer {op.name} has no bias")
    return op


def predict_logits(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The input of the final Softmax for uint8 (N, H, W) faces."""
    import keras

    head = keras.Model(model.inputs, model.layers[-1].input)
    x = np.asarray(images, dtype=np.float32)[..., None]
    return np.asarray(head.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)


def fold_temperature(model, temperature: float):
    """Divide the logit layer's kernel and bias by ``temperature`` in place; returns the model."""
    if not temperature > 0:
        raise CalibrationError(f"temperature must be positive, got {temperature}")
    layer = logit_layer(model)
    kernel, bias = layer.get_weights()
    layer.set_weights([(kernel / temperature).astype(kernel.dtype), (bias / temperature).astype(bias.dtype)])
    return model


def is_calibrated(card) -> bool:
    return RECORD_KEY in card.metrics


def calibrate(model, dataset, bins: int = ECE_BINS) -> dict[str, Any]:
    """Fit T on PublicTest, fold it into ``model`` (in place), return the card record.

    The record holds the temperature, the split it was fitted on and ECE/NLL/Brier/mean top probability
    before and after, on PrivateTest and PublicTest. It also carries the per-split probabilities
    (key ``_probs``, not for the card) for the reliability diagram.
    """
    if FIT_SPLIT not in dataset.splits or len(dataset.splits[FIT_SPLIT]) == 0:
        raise CalibrationError(f"{dataset.name}: no {FIT_SPLIT} split to fit the temperature on "
                               f"(the data set has {dataset.counts_text()})")
    splits = [s for s in REPORT_SPLITS if s in dataset.splits and len(dataset.splits[s]) > 0]
    logits = {s: predict_logits(model, dataset.split(s).images) for s in splits}
    labels = {s: np.asarray(dataset.split(s).labels) for s in splits}
    temperature = fit_temperature(logits[FIT_SPLIT], labels[FIT_SPLIT])
    fold_temperature(model, temperature)
    check = dataset.split(FIT_SPLIT).images[:128]
    folded = np.asarray(model.predict(check.astype(np.float32)[..., None], verbose=0), dtype=np.float64)
    expected = softmax(logits[FIT_SPLIT][: len(check)] / temperature)
    if np.max(np.abs(folded - expected)) > 1e-3:
        raise CalibrationError(f"{model.name}: the folded model does not reproduce softmax(logits / T)")
    before = {s: calibration_metrics(softmax(logits[s]), labels[s], bins) for s in splits}
    after = {s: calibration_metrics(softmax(logits[s] / temperature), labels[s], bins) for s in splits}
    log.info("temperature %.4f fitted on %s; %s", temperature, FIT_SPLIT,
             "; ".join(f"{s} ECE {before[s]['ece']:.4f} -> {after[s]['ece']:.4f}, NLL {before[s]['nll']:.4f} -> "
                       f"{after[s]['nll']:.4f}" for s in splits))
    return {
        "method": "temperature scaling, folded into the logit layer",
        "temperature": temperature,
        "fitted_on": FIT_SPLIT,
        "dataset": dataset.name,
        "layer": logit_layer(model).name,
        "ece_bins": bins,
        "before": before,
        "after": after,
        "_probs": {s: (softmax(logits[s]), softmax(logits[s] / temperature), labels[s]) for s in splits},
    }


def calibrate_and_save(model, card, dataset, out_dir: Path, bins: int = ECE_BINS) -> dict[str, Any]:
    """Calibrate ``model``, write ``<name>.keras`` and ``<name>.reliability.png`` into ``out_dir``.

    Records the result in ``card.metrics`` and the .keras file in ``card.artifacts``; the caller saves the
    card. The record returned is the card's (without the probabilities).
    """
    from train.calibration_plot import reliability_diagram

    out_dir.mkdir(parents=True, exist_ok=True)
    record = calibrate(model, dataset, bins)
    probs = record.pop("_probs")
    report_split = next(s for s in REPORT_SPLITS if s in probs)
    png = reliability_diagram(out_dir / f"{card.name}.reliability.png", *probs[report_split], bins=bins,
                              title=f"{card.name} on {report_split} (T = {record['temperature']:.3f}, fitted on "
                                    f"{FIT_SPLIT})")
    record["reliability_diagram"] = png.name
    keras_path = out_dir / f"{card.name}.keras"
    model.save(keras_path)
    card.metrics[RECORD_KEY] = record
    card.add_artifact("keras", keras_path)
    return record


def summary_line(record: dict[str, Any]) -> str:
    split = next(s for s in REPORT_SPLITS if s in record["after"])
    b, a = record["before"][split], record["after"][split]
    return (f"temperature {record['temperature']:.4f} (fitted on {record['fitted_on']}): {split} ECE "
            f"{b['ece']:.4f} -> {a['ece']:.4f}, NLL {b['nll']:.4f} -> {a['nll']:.4f}, mean top probability "
            f"{b['mean_top_probability']:.3f} -> {a['mean_top_probability']:.3f}, accuracy {a['accuracy']:.4f}")
