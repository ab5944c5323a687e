"""Quantization-aware fine-tuning of the int8 artifact toward the float model it stands for.

``tfmot`` needs Keras 2, so this module emulates TFLite's int8 arithmetic directly for plain chain
networks (edgefer, eyenet): BatchNorm and the input normalization are folded into the convolutions
(as the converter folds them), weights are fake-quantized per output channel (symmetric, [-127, 127]),
and every activation the int8 graph stores (each conv output after its fused ReLU, the global average,
the logits) is fake-quantized per tensor with the range that calibration on the same faces gives it.
Max pooling keeps its input's quantization, as in TFLite.

Fine-tuning then moves the folded float weights so that the *emulated int8* logits match the logits
of the unchanged float model (straight-through gradients), which targets exactly what the parity
report measures: top-1 agreement of the int8 artifact with the float model. The float32/float16/ONNX
artifacts are not touched; only the int8 artifact is converted from the fine-tuned weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class QATUnsupported(ValueError):
    """The model is not a plain chain this emulator covers (e.g. residual adds, LeakyReLU)."""


@dataclass
class FoldedChain:
    """A folded Keras model and the steps the int8 emulator walks through it."""

    model: Any  # keras.Model: raw 0-255 pixels in, softmax out
    steps: list[tuple[str, Any]] = field(default_factory=list)  # (kind, layer or pad spec)


def fold_chain(model) -> FoldedChain:
    """Fold BatchNorm and the input Rescaling into the convolutions of a chain model.

    The float function is unchanged: "same" padding of the normalized input becomes an explicit pad
    with the raw pixel value that normalizes to 0. Raises QATUnsupported for other graphs.
    """
    import keras
    from keras import layers

    from convert.export import fold_normalization

    chain = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise QATUnsupported(f"{model.name}: needs one input and one output")
    previous = model.inputs[0]
    for layer in chain:
        if layer.input is not previous:
            raise QATUnsupported(f"{model.name}: layer {layer.name} is not part of a plain chain")
        previous = layer.output

    image = keras.Input(model.inputs[0].shape[1:], name=model.inputs[0].name)
    x = image
    steps: list[tuple[str, Any]] = []
    normalize: tuple[float, float] | None = None
    i = 0
    while i < len(chain):
        layer = chain[i]
        following = chain[i + 1] if i + 1 < len(chain) else None
        kind = type(layer)
        if kind is layers.Rescaling and not steps and normalize is None:
            if np.ndim(layer.scale) or np.ndim(layer.offset):
                raise QATUnsupported(f"{layer.name}: per-channel Rescaling is not supported")
            normalize = (float(layer.scale), float(layer.offset))
        elif kind is layers.Conv2D:
            if layer.groups != 1 or layer.dilation_rate != (1, 1) or layer.activation not in (
                    keras.activations.linear, keras.activations.relu):
                raise QATUnsupported(f"{layer.name}: only plain Conv2D with linear or ReLU activation")
            kernel = layer.get_weights()[0]
            bias = layer.get_weights()[1] if layer.use_bias else np.zeros(layer.filters, np.float32)
            if type(following) is layers.BatchNormalization:
                kernel, bias = _fold_batchnorm(following, kernel, bias)
                i += 1
            padding = layer.padding
            if normalize is not None:
                if layer.strides != (1, 1):
                    raise QATUnsupported(f"{layer.name}: the first conv must have stride 1 to fold the input")
                kernel, bias, pads, pad_value = fold_normalization(kernel, bias, layer, *normalize)
                if pads:
                    x = keras.ops.pad(x, pads, constant_values=pad_value)
                    steps.append(("pad", (pads, pad_value)))
                    padding = "valid"
                normalize = None
            conv = layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides, padding=padding,
                                 activation=layer.activation, name=layer.name)
            x = conv(x)
            conv.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
            steps.append(("conv", conv))
        elif kind is layers.ReLU and not (layer.max_value or layer.negative_slope or layer.threshold):
            x = layers.ReLU(name=layer.name)(x)
            steps.append(("relu", None))
        elif kind in (layers.MaxPooling2D, layers.GlobalAveragePooling2D):
            clone = kind.from_config(layer.get_config())
            x = clone(x)
            steps.append(("maxpool" if kind is layers.MaxPooling2D else "gap", clone))
        elif kind is layers.Dropout:
            pass
        elif kind is layers.Dense and layer.activation is keras.activations.linear:
            dense = layers.Dense(layer.units, name=layer.name)
            x = dense(x)
            dense.set_weights(layer.get_weights() if layer.use_bias
                              else [layer.get_weights()[0], np.zeros(layer.units, np.float32)])
            steps.append(("dense", dense))
        elif kind is layers.Softmax and following is None:
            x = layers.Softmax(name=layer.name, dtype="float32")(x)
            steps.append(("softmax", None))
        else:
            raise QATUnsupported(f"{layer.name}: {kind.__name__} is not covered by the int8 emulator")
        i += 1
    if normalize is not None or not steps or steps[-1][0] != "softmax":
        raise QATUnsupported(f"{model.name}: expected Rescaling -> ... -> Dense -> Softmax")
    return FoldedChain(keras.Model(image, x, name=model.name), steps)


def _fold_batchnorm(bn, kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weights = bn.get_weights()
    gamma = weights.pop(0) if bn.scale else np.ones(kernel.shape[-1], np.float32)
    beta = weights.pop(0) if bn.center else np.zeros(kernel.shape[-1], np.float32)
    mean, var = weights
    factor = gamma / np.sqrt(var + bn.epsilon)
    return kernel * factor, beta + (bias - mean) * factor


def _quant_points(steps: list[tuple[str, Any]]) -> list[int]:
    """Indices of steps after which the int8 graph stores a requantized tensor."""
    points = []
    for i, (kind, _) in enumerate(steps):
        fused_relu = i + 1 < len(steps) and steps[i + 1][0] == "relu"
        if (kind == "conv" and not fused_relu) or kind in ("relu", "gap", "dense"):
            points.append(i)
    return points


def _fake_quant(x, scale: float, zero: int):
    import tensorflow as tf

    q = tf.clip_by_value(tf.round(x / scale) + zero, -128.0, 127.0)
    return x + tf.stop_gradient((q - zero) * scale - x)


def _fake_quant_weights(w):
    """Symmetric per-output-channel int8 (narrow range), as TFLite quantizes conv and FC weights."""
    import tensorflow as tf

    axes = list(range(len(w.shape) - 1))
    scale = tf.maximum(tf.reduce_max(tf.abs(w), axis=axes), 1e-12) / 127.0
    return w + tf.stop_gradient(tf.clip_by_value(tf.round(w / scale), -127.0, 127.0) * scale - w)


class Int8Emulator:
    """Runs a FoldedChain in float with TFLite's int8 rounding; ``logits`` is differentiable."""

    def __init__(self, chain: FoldedChain):
        self.chain = chain
        self.points = _quant_points(chain.steps)
        self.ranges: dict[int, tuple[float, int]] = {}

    def calibrate(self, images: np.ndarray, batch_size: int = 250) -> None:
        """Per-tensor asymmetric int8 parameters from the min/max over the calibration faces."""
        lo = {p: 0.0 for p in self.points}
        hi = {p: 0.0 for p in self.points}
        for start in range(0, len(images), batch_size):
            x = self._prepare(images[start : start + batch_size])
            for i, step in enumerate(self.chain.steps[:-1]):
                x = self._apply(step, x, quantize=False)
                if i in lo:
                    lo[i], hi[i] = min(lo[i], float(np.min(x))), max(hi[i], float(np.max(x)))
        for p in self.points:
            scale = max(hi[p] - lo[p], 1e-8) / 255.0
            self.ranges[p] = (scale, int(np.clip(np.round(-128 - lo[p] / scale), -128, 127)))

    @staticmethod
    def _prepare(images: np.ndarray):
        import tensorflow as tf

        return tf.convert_to_tensor(np.asarray(images, np.float32)[..., None])

    def _apply(self, step: tuple[str, Any], x, quantize: bool):
        import tensorflow as tf

        kind, layer = step
        if kind == "pad":
            pads, value = layer
            return tf.pad(x, pads, constant_values=float(np.round(value)) if quantize else value)
        if kind == "conv":
            kernel = _fake_quant_weights(layer.kernel) if quantize else layer.kernel
            y = tf.nn.conv2d(x, kernel, layer.strides, layer.padding.upper()) + layer.bias
            return tf.nn.relu(y) if layer.activation is not None and layer.activation.__name__ == "relu" else y
        if kind == "relu":
            return tf.nn.relu(x)
        if kind in ("maxpool", "gap"):
            return layer(x)
        if kind == "dense":
            kernel = _fake_quant_weights(layer.kernel) if quantize else layer.kernel
            return tf.matmul(x, kernel) + layer.bias
        raise AssertionError(kind)

    def logits(self, images, quantize: bool = True):
        x = images if not isinstance(images, np.ndarray) else self._prepare(images)
        for i, step in enumerate(self.chain.steps[:-1]):  # the last step is the softmax
            x = self._apply(step, x, quantize)
            if quantize and i in self.ranges:
                x = _fake_quant(x, *self.ranges[i])
        return x

    def predict_classes(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        return np.concatenate([np.argmax(self.logits(images[s : s + batch_size]).numpy(), axis=1)
                               for s in range(0, len(images), batch_size)])


def reference_logits(model):
    """A model giving the float logits (the input of the final Softmax)."""
    import keras

    last = model.layers[-1]
    if not isinstance(last, keras.layers.Softmax):
        raise QATUnsupported(f"{model.name}: the last layer must be a Softmax")
    return keras.Model(model.inputs, last.input)


def finetune(
    model,
    source,
    train_images: np.ndarray,
    select_images: np.ndarray,
    calibration: np.ndarray,
    *,
    epochs: int = 2,
    lr: float = 1e-4,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> tuple[FoldedChain, dict[str, Any]]:
    """Fine-tune the int8 emulation of ``source`` (``model``, possibly equalized) to match ``model``.

    Trains on ``train_images`` (uint8 faces, random horizontal flips), keeps the epoch whose emulated
    int8 top-1 agreement with ``model`` on ``select_images`` is best (epoch 0 = no fine-tuning), and
    returns the folded chain (its ``model`` is what to convert) with those weights plus a summary for the
    parity report.
    """
    import tensorflow as tf

    chain = fold_chain(source)
    emulator = Int8Emulator(chain)
    teacher = reference_logits(model)
    select_ref = np.argmax(teacher.predict(select_images.astype(np.float32)[..., None], batch_size=500,
                                           verbose=0), axis=1)
    variables = [v for _, layer in chain.steps if hasattr(layer, "kernel") for v in (layer.kernel, layer.bias)]

    def agreement() -> float:
        emulator.calibrate(calibration)
        return float(np.mean(emulator.predict_classes(select_images) == select_ref))

    best = agreement()
    history = [best]
    best_weights = [v.numpy() for v in variables]
    log.info("int8 emulation: agreement %.4f on the selection faces before fine-tuning", best)
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(train_images) // batch_size
    total = max(1, epochs * steps_per_epoch)
    import keras

    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, total))

    @tf.function(reduce_retracing=True)
    def train_step(x):
        target = teacher(x, training=False)
        target = target - tf.reduce_mean(target, axis=1, keepdims=True)
        with tf.GradientTape() as tape:
            z = emulator.logits(x)
            z = z - tf.reduce_mean(z, axis=1, keepdims=True)
            loss = tf.reduce_mean(tf.square(z - target))
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train_images))
        losses = []
        bar = _progress(steps_per_epoch, f"QAT epoch {epoch}/{epochs}", progress)
        for b in range(steps_per_epoch):
            batch = train_images[order[b * batch_size : (b + 1) * batch_size]].astype(np.float32)
            flip = rng.random(len(batch)) < 0.5
            batch[flip] = batch[flip, :, ::-1]
            losses.append(float(train_step(tf.convert_to_tensor(batch[..., None]))))
            bar.update(1)
        bar.close()
        score = agreement()
        history.append(score)
        log.info("QAT epoch %d: logit MSE %.5f, emulated int8 agreement %.4f", epoch, np.mean(losses), score)
        if score > best:
            best, best_weights = score, [v.numpy() for v in variables]
    for v, w in zip(variables, best_weights, strict=True):
        v.assign(w)
    summary = {"epochs": epochs, "lr": lr, "selected_epoch": int(np.argmax(history)),
               "emulated_agreement_by_epoch": [round(a, 4) for a in history]}
    return chain, summary


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, leave=False)
