"""Batched, vectorized augmentation for grey faces, written against ``keras.ops`` (any Keras 3 backend).

One affine transform per image covers rotation, scale, shift and horizontal flip in a single op
(``keras.ops.image.affine_transform``: ``ImageProjectiveTransformV3`` under TensorFlow, ``map_coordinates``
under JAX); brightness/contrast and random erasing are elementwise. Pixels stay in the 0-255 range the
model expects. The same function runs inside ``tf.data`` under TensorFlow and inside a jitted batch
function on the accelerator under JAX (``train.pipeline``).

Every draw is stateless, from a per-batch seed that the input pipeline changes every batch and epoch.
Stateful random ops inside ``Dataset.map`` restart their sequence with each new iterator, so under a
global seed every epoch would reuse the previous epoch's augmentation draws, batch position by batch
position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras
from keras import ops


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    max_rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    max_shift: float = 0.10  # fraction of the side
    brightness: float = 0.25  # max shift as a fraction of the 0-255 range
    contrast: tuple[float, float] = (0.6, 1.4)
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.2)
    erase_aspect: tuple[float, float] = (0.3, 3.3)
    blur: float = 0.0  # up to this share of a sigma-1 binomial blur is mixed in (resampled, defocused cameras)
    noise_std: float = 0.0  # sensor noise: per image, a standard deviation up to this, in grey levels

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(False, 0.0, (1.0, 1.0), 0.0, 0.0, (1.0, 1.0), 0.0)


def augment_with(base: AugmentConfig, overrides: dict[str, Any]) -> AugmentConfig:
    """``base`` with some fields replaced (from a command line's JSON); an unknown field is a ValueError."""
    from dataclasses import fields, replace

    if not isinstance(overrides, dict):
        raise ValueError(f"--augment: a JSON object is expected, not {overrides!r}")
    known = {f.name for f in fields(AugmentConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"--augment: unknown field(s) {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(sorted(known))}")
    out = replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    for name in ("max_rotation_deg", "max_shift", "brightness", "erase_prob", "blur", "noise_std"):
        value = getattr(out, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"--augment: {name} must be a number >= 0, not {value!r}")
    if out.blur > 1 or out.erase_prob > 1:
        raise ValueError("--augment: blur and erase_prob are shares, at most 1")
    return out


def as_seed(seed: Any) -> Any:
    """A stateless seed tensor, shape [2], in the backend's seed dtype (int64 for TF, uint32 for JAX)."""
    return ops.cast(ops.convert_to_tensor(seed), "int64" if _tensorflow() else "uint32")


def _tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


def _stateless_uniform(shape, low, high, dtype: str, seed: Any) -> Any:
    # keras.random takes a seed tensor under JAX only; TensorFlow's own stateless op takes one in any graph.
    if _tensorflow():
        import tensorflow as tf

        return tf.random.stateless_uniform(shape, seed, low, high, dtype=dtype)
    return keras.random.randint(shape, low, high, dtype=dtype, seed=seed) if dtype == "int32" else \
        keras.random.uniform(shape, low, high, dtype=dtype, seed=seed)


class _Draws:
    """Independent stateless uniform draws from one seed: each call splits a fresh seed off the chain."""

    def __init__(self, seed: Any):
        self._seed = as_seed(seed)

    def _next(self) -> Any:
        pair = _stateless_uniform((2, 2), 0, 2**31 - 1, "int32", self._seed)
        self._seed = as_seed(pair[0])
        return as_seed(pair[1])

    def uniform(self, shape, low: float = 0.0, high: float = 1.0) -> Any:
        return _stateless_uniform(shape, low, high, "float32", self._next())


def _affine_params(n: Any, size: float, cfg: AugmentConfig, draws: _Draws) -> Any:
    """Inverse-mapping transforms (output -> input pixel), one 8-vector per image."""
    angle = draws.uniform((n,), -1.0, 1.0) * (cfg.max_rotation_deg * math.pi / 180.0)
    scale = draws.uniform((n,), cfg.scale_range[0], cfg.scale_range[1])
    shift_x = draws.uniform((n,), -1.0, 1.0) * cfg.max_shift * size
    shift_y = draws.uniform((n,), -1.0, 1.0) * cfg.max_shift * size
    flip = ops.cast(draws.uniform((n,)) < 0.5, "float32") if cfg.flip else ops.zeros((n,))
    sign = 1.0 - 2.0 * flip  # -1 mirrors x
    c = (size - 1.0) / 2.0
    cos, sin = ops.cos(angle) / scale, ops.sin(angle) / scale
    # input = R(-a)/s * (output - c - shift) with x mirrored, + c
    a0, a1 = cos * sign, sin
    b0, b1 = -sin * sign, cos
    a2 = c - a0 * (c + shift_x) - a1 * (c + shift_y)
    b2 = c - b0 * (c + shift_x) - b1 * (c + shift_y)
    zeros = ops.zeros_like(angle)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _random_erase(images: Any, n: Any, h: int, w: int, cfg: AugmentConfig, draws: _Draws) -> Any:
    hf, wf = float(h), float(w)
    area = draws.uniform((n,), cfg.erase_area[0], cfg.erase_area[1]) * hf * wf
    ratio = ops.exp(draws.uniform((n,), math.log(cfg.erase_aspect[0]), math.log(cfg.erase_aspect[1])))
    eh = ops.minimum(ops.sqrt(area * ratio), hf)
    ew = ops.minimum(ops.sqrt(area / ratio), wf)
    y0 = draws.uniform((n,)) * (hf - eh)
    x0 = draws.uniform((n,)) * (wf - ew)
    ys = ops.reshape(ops.arange(h, dtype="float32"), (1, h, 1))
    xs = ops.reshape(ops.arange(w, dtype="float32"), (1, 1, w))
    col = lambda v: ops.reshape(v, (-1, 1, 1))  # noqa: E731
    inside = ops.logical_and(
        ops.logical_and(ys >= col(y0), ys < col(y0 + eh)),
        ops.logical_and(xs >= col(x0), xs < col(x0 + ew)),
    )
    apply = draws.uniform((n,)) < cfg.erase_prob
    mask = ops.logical_and(inside, col(apply))
    noise = draws.uniform(ops.shape(images), 0.0, 255.0)
    return ops.where(ops.expand_dims(mask, -1), noise, images)


def augment_batch(images: Any, cfg: AugmentConfig, seed: Any = None) -> Any:
    """images: float32 (N, H, W, 1) in 0-255. Returns the same shape and range.

    ``seed`` (a [2] integer tensor or pair) fixes every draw; without one, a seed is drawn from Keras'
    global seed generator.
    """
    if seed is None:
        seed = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32")
    draws = _Draws(seed)
    images = ops.cast(images, "float32")
    n = ops.shape(images)[0]
    h, w = int(images.shape[1]), int(images.shape[2])
    transforms = _affine_params(n, float(h), cfg, draws)
    images = ops.image.affine_transform(images, transforms, interpolation="bilinear", fill_mode="reflect",
                                        data_format="channels_last")
    if cfg.contrast != (1.0, 1.0) or cfg.brightness:
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        contrast = draws.uniform((n, 1, 1, 1), cfg.contrast[0], cfg.contrast[1])
        shift = draws.uniform((n, 1, 1, 1), -1.0, 1.0) * cfg.brightness * 255.0
        images = (images - mean) * contrast + mean + shift
    if cfg.blur > 0:
        images = _blur_mix(images, n, cfg.blur, draws)
    if cfg.noise_std > 0:
        std = draws.uniform((n, 1, 1, 1), 0.0, cfg.noise_std)
        images = images + draws.uniform(ops.shape(images), -1.0, 1.0) * (math.sqrt(3.0) * std)
    images = ops.clip(images, 0.0, 255.0)
    if cfg.erase_prob > 0:
        images = _random_erase(images, n, h, w, cfg, draws)
    return images


_BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def _blur_mix(images: Any, n: Any, strength: float, draws: _Draws) -> Any:
    """Each image moves a random share (up to ``strength``) of the way to its 5x5 binomial blur (sigma 1)."""
    taps = ops.convert_to_tensor(_BINOMIAL_5, dtype="float32") / 16.0
    kernel = ops.reshape(ops.outer(taps, taps), (5, 5, 1, 1))
    padded = ops.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    blurred = ops.conv(padded, kernel, strides=1, padding="valid", data_format="channels_last")
    share = draws.uniform((n, 1, 1, 1), 0.0, strength)
    return images + share * (blurred - images)
