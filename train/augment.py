"""Batched, vectorized augmentation for grey faces (runs in tf.data on whole batches).

One projective transform per image covers rotation, scale, shift and horizontal flip in a single
op; brightness/contrast and random erasing are elementwise. Pixels stay in the 0-255 range the
model expects.

Every draw is stateless, from a per-batch seed that the input pipeline changes every epoch
(``train.fit.make_tf_dataset``). Stateful ``tf.random`` ops inside ``Dataset.map`` restart their
sequence with each new iterator, so under a global seed every epoch would reuse the previous epoch's
augmentation draws, batch position by batch position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf


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

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(False, 0.0, (1.0, 1.0), 0.0, 0.0, (1.0, 1.0), 0.0)


class _Draws:
    """Independent stateless uniform draws from one seed: the i-th call folds i into it."""

    def __init__(self, seed: tf.Tensor):
        self._seed = seed
        self._count = 0

    def uniform(self, shape, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
        seed = tf.random.experimental.stateless_fold_in(self._seed, self._count)
        self._count += 1
        return tf.random.stateless_uniform(shape, seed, low, high)


def _affine_params(batch: tf.Tensor, size: float, cfg: AugmentConfig, draws: _Draws) -> tf.Tensor:
    """Inverse-mapping transforms (output -> input pixel), one 8-vector per image."""
    n = tf.shape(batch)[0]
    angle = draws.uniform([n], -1.0, 1.0) * (cfg.max_rotation_deg * math.pi / 180.0)
    scale = draws.uniform([n], cfg.scale_range[0], cfg.scale_range[1])
    shift_x = draws.uniform([n], -1.0, 1.0) * cfg.max_shift * size
    shift_y = draws.uniform([n], -1.0, 1.0) * cfg.max_shift * size
    flip = tf.cast(draws.uniform([n]) < 0.5, tf.float32) if cfg.flip else tf.zeros([n])
    sign = 1.0 - 2.0 * flip  # -1 mirrors x
    c = (size - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # input = R(-a)/s * (output - c - shift) with x mirrored, + c
    a0, a1 = cos * sign, sin
    b0, b1 = -sin * sign, cos
    a2 = c - a0 * (c + shift_x) - a1 * (c + shift_y)
    b2 = c - b0 * (c + shift_x) - b1 * (c + shift_y)
    zeros = tf.zeros([n])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def _random_erase(images: tf.Tensor, cfg: AugmentConfig, draws: _Draws) -> tf.Tensor:
    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    area = draws.uniform([n], cfg.erase_area[0], cfg.erase_area[1]) * hf * wf
    log_r = draws.uniform([n], math.log(cfg.erase_aspect[0]), math.log(cfg.erase_aspect[1]))
    ratio = tf.exp(log_r)
    eh = tf.minimum(tf.sqrt(area * ratio), hf)
    ew = tf.minimum(tf.sqrt(area / ratio), wf)
    y0 = draws.uniform([n]) * (hf - eh)
    x0 = draws.uniform([n]) * (wf - ew)
    ys = tf.range(hf)[None, :, None]
    xs = tf.range(wf)[None, None, :]
    inside = (
        (ys >= y0[:, None, None])
        & (ys < (y0 + eh)[:, None, None])
        & (xs >= x0[:, None, None])
        & (xs < (x0 + ew)[:, None, None])
    )
    apply = draws.uniform([n]) < cfg.erase_prob
    mask = inside & apply[:, None, None]
    noise = draws.uniform(tf.shape(images), 0.0, 255.0)
    return tf.where(mask[..., None], noise, images)


def augment_batch(images: tf.Tensor, cfg: AugmentConfig, seed: tf.Tensor | None = None) -> tf.Tensor:
    """images: float32 (N, H, W, 1) in 0-255. Returns the same shape and range.

    ``seed`` (int64, shape [2]) fixes every draw; without one, a seed is drawn from the global generator.
    """
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
    draws = _Draws(seed)
    size = tf.cast(tf.shape(images)[1], tf.float32)
    transforms = _affine_params(images, size, cfg, draws)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    n = tf.shape(images)[0]
    if cfg.contrast != (1.0, 1.0) or cfg.brightness:
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        contrast = draws.uniform([n, 1, 1, 1], cfg.contrast[0], cfg.contrast[1])
        shift = draws.uniform([n, 1, 1, 1], -1.0, 1.0) * cfg.brightness * 255.0
        images = (images - mean) * contrast + mean + shift
    images = tf.clip_by_value(images, 0.0, 255.0)
    if cfg.erase_prob > 0:
        images = _random_erase(images, cfg, draws)
    return images
