"""Keras model -> full-integer int8 TFLite, float16/float32 TFLite, and ONNX (tf2onnx)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TFLITE_MODES = ("int8", "float16", "float32")


def representative_set(images: np.ndarray, labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """A class-stratified sample of real training faces for int8 calibration.

    Each class gets an equal share (or all its images when it has fewer), so rare classes such as
    disgust still shape the activation ranges. Returns uint8 (N, H, W).
    """
    if size <= 0:
        raise ValueError("calibration size must be positive")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, size // len(classes))
    picks = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        picks.append(rng.choice(idx, size=min(per_class, idx.size), replace=False))
    chosen = np.concatenate(picks)
    if chosen.size < size:
        rest = np.setdiff1d(np.arange(len(labels)), chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, size=min(size - chosen.size, rest.size), replace=False)])
    return images[rng.permutation(chosen)]


_SCALE_COMMUTING = ("MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Dropout")


def _next_weighted_layer(layer):
    """The one Conv2D/Dense that ``layer``'s output reaches through scale-commuting layers, or None."""
    import keras

    while len(layer._outbound_nodes) == 1:
        layer = layer._outbound_nodes[0].operation
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            return layer
        if type(layer).__name__ not in _SCALE_COMMUTING:
            return None
    return None


def equalize_activations(model, calibration: np.ndarray, alpha: float = 0.5):
    """Cross-layer equalization of activation ranges (Nagel et al. 2019) for int8; returns a new model or None.

    int8 activations share one scale per tensor, so channels whose range is far below the tensor's largest
    lose resolution. For each BatchNorm -> ReLU whose output reaches exactly one Conv2D/Dense through
    scale-commuting layers (pooling, dropout), channel c is multiplied by ``s_c = (max_range / range_c) **
    alpha`` (BN gamma and beta) and the next layer's input weights for c are divided by ``s_c``. ReLU and
    max-pooling commute with positive scales, so the float function is unchanged; alpha 0.5 balances
    activation and weight ranges. Ranges come from the calibration faces. Returns None when no layer fits.
    """
    import keras

    equalized = keras.models.clone_model(model)
    equalized.set_weights(model.get_weights())
    x = calibration.astype(np.float32)[..., None]
    done = 0
    for relu in [layer for layer in equalized.layers if isinstance(layer, keras.layers.ReLU)]:
        bn = relu.input._keras_history.operation
        consumer = _next_weighted_layer(relu)
        if (consumer is None or not isinstance(bn, keras.layers.BatchNormalization) or len(bn._outbound_nodes) != 1
                or relu.max_value is not None or relu.negative_slope or relu.threshold
                or not bn.scale or not bn.center):
            continue
        acts = keras.Model(equalized.inputs, relu.output).predict(x, batch_size=200, verbose=0)
        ranges = np.maximum(acts.reshape(-1, acts.shape[-1]).max(axis=0), 1e-3)
        s = ((ranges.max() / ranges) ** alpha).astype(np.float32)
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * s, beta * s, mean, var])
        weights = consumer.get_weights()
        weights[0] = weights[0] / (s[:, None] if weights[0].ndim == 2 else s[None, None, :, None])
        consumer.set_weights(weights)
        done += 1
    log.info("equalized %d activation(s) across layers (alpha %.2f)", done, alpha)
    return equalized if done else None


def with_tiebreak_head(model, scale: float = 8.0):
    """The model with a second output of pairwise logit margins (see ``edge.vision.tiebreak``), or None.

    Needs the usual head, a Dense layer feeding the final Softmax; other models convert unchanged.
    The clip to [-1, 1] fuses into the fully connected op as RELU_N1_TO_1, so the int8 output range
    is +-1 (+-1/scale logits) and near-ties keep their sign.
    """
    import keras

    from edge.vision.tiebreak import margin_count, pairwise_weights

    last = model.layers[-1]
    logits = last.input._keras_history.operation if isinstance(last, keras.layers.Softmax) else None
    if not isinstance(logits, keras.layers.Dense) or len(model.outputs) != 1:
        log.info("%s: no Dense -> Softmax head, converting without the tie-break head", model.name)
        return None
    kernel, bias = logits.get_weights()
    margins = keras.layers.Dense(margin_count(kernel.shape[1]), name="pairwise_margins")
    clipped = keras.ops.clip(margins(logits.input), -1.0, 1.0)
    margins.set_weights(list(pairwise_weights(kernel, bias, scale)))
    return keras.Model(model.inputs, [model.outputs[0], clipped], name=model.name)


def fold_input_normalization(model):
    """The model with its input ``Rescaling`` folded into the first convolution, for int8; or None.

    In-graph normalization ``v = a * p + b`` (raw pixels p) cannot be exact in int8: v = (p - 127.5) /
    127.5 needs a zero point of -0.5, so the quantized input moves every pixel by half a grey level (and
    the converter's MUL/ADD pair rounds once more on a coarser grid). Measured on the shipped model,
    that input error alone flips about 1% of predictions. Folded, the first conv reads the exact uint8
    pixels: weights ``a * W``, bias ``bias + b * sum(W)``, and "same" padding becomes an explicit pad
    with the pixel value that normalizes to 0 (-b / a), so the float function is unchanged.
    Needs Input -> Rescaling -> Conv2D (stride 1, no dilation or groups); returns None otherwise.
    """
    import keras

    rescale = next((layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling)), None)
    if rescale is None or len(model.inputs) != 1 or rescale.input is not model.inputs[0]:
        return None
    conv = rescale._outbound_nodes[0].operation if len(rescale._outbound_nodes) == 1 else None
    if (type(conv) is not keras.layers.Conv2D or conv.strides != (1, 1) or conv.dilation_rate != (1, 1)
            or conv.groups != 1 or conv.padding not in ("same", "valid") or conv.data_format != "channels_last"
            or np.ndim(rescale.scale) or np.ndim(rescale.offset)):
        return None
    kernel = conv.get_weights()[0]
    bias = conv.get_weights()[1] if conv.use_bias else np.zeros(conv.filters, np.float32)
    kernel, bias, pads, pad_value = fold_normalization(kernel, bias, conv, float(rescale.scale), float(rescale.offset))
    image = keras.Input(model.inputs[0].shape[1:], name=model.inputs[0].name)
    x = keras.ops.pad(image, pads, constant_values=pad_value) if pads else image
    folded = keras.layers.Conv2D(conv.filters, conv.kernel_size, padding="valid", activation=conv.activation,
                                 name=conv.name)
    x = folded(x)
    folded.set_weights([kernel, bias])
    tail = keras.Model(conv.output, model.outputs)
    return keras.Model(image, tail(x), name=model.name)


def fold_normalization(kernel: np.ndarray, bias: np.ndarray, conv, scale: float, offset: float):
    """Weights of ``conv`` reading raw pixels p instead of ``scale * p + offset``.

    Returns (kernel, bias, pads, pad_value): with "same" padding, ``pads`` is the explicit padding of
    the raw image with ``pad_value``, the pixel that normalizes to 0, after which the conv is "valid".
    """
    kernel, bias = kernel * scale, bias + offset * kernel.sum(axis=(0, 1, 2))
    pads = None
    if conv.padding == "same":
        kh, kw = conv.kernel_size
        pads = ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0))
    return kernel.astype(np.float32), bias.astype(np.float32), pads, -offset / scale


def to_tflite(model, mode: str, representative: np.ndarray | None = None) -> bytes:
    """Convert with ``TFLiteConverter.from_keras_model`` (``from_concrete_functions`` is broken on Keras 3).

    int8: builtins-int8 only, uint8 input (raw 0-255 pixels map to themselves: scale 1, zero point 0
    when the calibration data spans 0-255) and uint8 output.
    """
    import tensorflow as tf

    if mode not in TFLITE_MODES:
        raise ValueError(f"mode must be one of {TFLITE_MODES}, not {mode!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 conversion needs a representative set of real faces")
        samples = representative.astype(np.float32)[..., None].copy()
        # Pin the input range to exactly 0-255 so the uint8 input quantizes with scale 1, zero point 0:
        # raw camera pixels then go in unchanged, whatever range the calibration faces happen to span.
        samples[0, 0, 0, 0], samples[0, 0, 1, 0] = 0.0, 255.0

        def gen() -> Iterator[list[np.ndarray]]:
            for i in range(len(samples)):
                yield [samples[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def to_onnx(model, path: Path, opset: int = 17) -> Path:
    """Export through tf2onnx with the input named ``image`` (float32 NHWC, raw 0-255)."""
    import tensorflow as tf
    import tf2onnx

    if not 13 <= opset <= 18:
        raise ValueError(f"ONNX opset must be 13-18, not {opset}")
    size = model.input_shape[1:]
    spec = [tf.TensorSpec((None, *size), tf.float32, name="image")]
    with tempfile.TemporaryDirectory():
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=os.fspath(path))
    import onnx

    onnx.checker.check_model(onnx.load(os.fspath(path)))
    return path
