"""Architecture registry. Every model takes raw 0-255 grey pixels and normalizes inside the graph.

Only ops that stay on TFLite's int8 builtin path are used (Conv2D, DepthwiseConv2D, BatchNorm folded
into convs, ReLU/LeakyReLU, Add, MaxPool/AvgPool, GlobalAveragePooling, Dense, Softmax).

Strided 1x1 shortcuts are written as ``MaxPool(1, stride 2)`` + 1x1 conv: the same arithmetic, and it
avoids a oneDNN crash in TF 2.21 when training a strided 1x1 conv on a 1- or 8-channel input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

from edge.contract import FACE_INPUT_SIZE

BN_MOMENTUM = 0.9  # 0.99 has not converged after short runs, so small models predict one class


@dataclass(frozen=True)
class ArchSpec:
    name: str
    build: Callable[..., keras.Model]
    description: str
    baseline: bool = False


REGISTRY: dict[str, ArchSpec] = {}


def register(name: str, description: str, baseline: bool = False):
    def wrap(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        REGISTRY[name] = ArchSpec(name, fn, description, baseline)
        return fn

    return wrap


def build_model(name: str, num_classes: int, input_size: int = FACE_INPUT_SIZE, **kwargs) -> keras.Model:
    if name not in REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; choose one of: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].build(num_classes=num_classes, input_size=input_size, **kwargs)


def _input(input_size: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    inputs = keras.Input((input_size, input_size, 1), name="image")
    # Raw 0-255 in; [-1, 1] inside the graph so no caller ever has to know the normalization.
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(inputs)
    return inputs, x


def _conv_bn_act(x, filters: int, kernel: int = 3, name: str = "", act: str = "relu"):
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    if act == "relu":
        return layers.ReLU(name=f"{name}_relu")(x)
    return layers.LeakyReLU(0.1, name=f"{name}_lrelu")(x)


def _head(x, num_classes: int, dropout: float):
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Softmax(name="probs", dtype="float32")(x)


@register("edgefer", "our compact CNN for int8 on ARM CPUs (the shipped model), ~0.83M params")
def edgefer(
    num_classes: int,
    input_size: int = FACE_INPUT_SIZE,
    stem: int = 32,
    widths: tuple[int, ...] = (64, 128, 192),
    convs: tuple[int, ...] = (2, 2, 2),
    dropout: float = 0.3,
) -> keras.Model:
    """A plain conv-BN-ReLU stack with a global-average-pooling head.

    One conv at full 48x48 resolution, then stages behind 2x2 max-pools (24, 12, 6). Measured on a
    2-core x86 CPU with TF 2.21, residual adds and depthwise convs cost 2-10x more time per MAC than
    plain 3x3 convs, and on ARM int8 (XNNPACK) plain 3x3 convs are the best-optimized kernels too;
    BN folds into the convs on conversion, so the int8 graph is conv+relu, maxpool, mean, dense.
    """
    inputs, x = _input(input_size)
    x = _conv_bn_act(x, stem, name="stem")
    for stage, (width, count) in enumerate(zip(widths, convs, strict=True)):
        x = layers.MaxPooling2D(2, name=f"s{stage}_pool")(x)
        for conv in range(count):
            x = _conv_bn_act(x, width, name=f"s{stage}c{conv}")
    return keras.Model(inputs, _head(x, num_classes, dropout), name="edgefer")


@register("mini_xception", "mini-Xception (Arriaga et al. 2017), ~60k parameters", baseline=True)
def mini_xception(num_classes: int, input_size: int = FACE_INPUT_SIZE, dropout: float = 0.0) -> keras.Model:
    inputs, x = _input(input_size)
    reg = keras.regularizers.l2(0.01)
    for i in (1, 2):
        x = layers.Conv2D(8, 3, use_bias=False, kernel_regularizer=reg, name=f"stem{i}_conv")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"stem{i}_bn")(x)
        x = layers.ReLU(name=f"stem{i}_relu")(x)
    for m, width in enumerate((16, 32, 64, 128)):
        shortcut = layers.MaxPooling2D(1, strides=2, padding="same", name=f"m{m}_sub")(x)
        shortcut = layers.Conv2D(width, 1, use_bias=False, name=f"m{m}_proj")(shortcut)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"m{m}_proj_bn")(shortcut)
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False, depthwise_regularizer=reg,
                                   pointwise_regularizer=reg, name=f"m{m}_sep1")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"m{m}_bn1")(x)
        x = layers.ReLU(name=f"m{m}_relu")(x)
        x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False, depthwise_regularizer=reg,
                                   pointwise_regularizer=reg, name=f"m{m}_sep2")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"m{m}_bn2")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"m{m}_pool")(x)
        x = layers.Add(name=f"m{m}_add")([x, shortcut])
    x = layers.Conv2D(num_classes, 3, padding="same", name="class_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Softmax(name="probs", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="mini_xception")


@register("baseline_2block", "source report: 2 conv blocks + dense 128 (~1.05M params)", baseline=True)
def baseline_2block(num_classes: int, input_size: int = FACE_INPUT_SIZE, dropout: float = 0.5) -> keras.Model:
    inputs, x = _input(input_size)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="b1_conv1")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="b1_conv2")(x)
    x = layers.MaxPooling2D(2, name="b1_pool")(x)
    x = layers.Dropout(0.25, name="b1_drop")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="b2_conv1")(x)
    x = layers.MaxPooling2D(2, name="b2_pool1")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="b2_conv2")(x)
    x = layers.MaxPooling2D(2, name="b2_pool2")(x)
    x = layers.Dropout(0.25, name="b2_drop")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="fc")(x)
    x = layers.Dropout(dropout, name="fc_drop")(x)
    x = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, layers.Softmax(name="probs", dtype="float32")(x), name="baseline_2block")


@register("baseline_5conv", "source report: 5 convs 32/64/128/256/512 with LeakyReLU", baseline=True)
def baseline_5conv(num_classes: int, input_size: int = FACE_INPUT_SIZE, dropout: float = 0.4) -> keras.Model:
    inputs, x = _input(input_size)
    for i, width in enumerate((32, 64, 128, 256, 512)):
        x = _conv_bn_act(x, width, name=f"c{i}", act="leaky")
        if i < 4:
            x = layers.MaxPooling2D(2, name=f"c{i}_pool")(x)
    return keras.Model(inputs, _head(x, num_classes, dropout), name="baseline_5conv")


@register("eyenet", "tiny CNN for 24x24 open/closed eye patches")
def eyenet(num_classes: int, input_size: int = 24, dropout: float = 0.2,
           widths: tuple[int, int, int] = (16, 32, 64)) -> keras.Model:
    inputs, x = _input(input_size)
    for i, width in enumerate(widths):
        x = _conv_bn_act(x, width, name=f"c{i}a")
        x = _conv_bn_act(x, width, name=f"c{i}b")
        if i < 2:
            x = layers.MaxPooling2D(2, name=f"c{i}_pool")(x)
    return keras.Model(inputs, _head(x, num_classes, dropout), name="eyenet")


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass for Conv2D, SeparableConv2D and Dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.SeparableConv2D):
            h, w, c_out = layer.output.shape[1:]
            c_in = layer.input.shape[-1]
            k = layer.kernel_size[0] * layer.kernel_size[1]
            total += h * w * (c_in * k + c_in * c_out)
        elif isinstance(layer, layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            c_in = layer.input.shape[-1]
            total += h * w * c_out * c_in * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)
