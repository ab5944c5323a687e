"""Input pipeline without tf.data: the whole uint8 data set on the accelerator, batches gathered by index.

Used for every backend but TensorFlow (which keeps ``train.fit.make_tf_dataset``). Each batch is built by
one compiled function on the device: gather the rows, augment them (``train.augment``), and, when
distilling online, run the teachers on the augmented faces. Only the row indices and a two-word seed
cross from the host per batch.

Randomness is a pure function of (stream seed, epoch, batch index): the epoch's row order comes from
``epoch_order`` and each batch's augmentation draws from ``batch_seed``, so a run is reproducible from its
seed, and no epoch replays another's order or draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from train.augment import AugmentConfig, augment_batch


def batch_seed(stream_seed: int, epoch: int, index: int) -> np.ndarray:
    """The augmentation seed (two uint32 words) of batch ``index`` of ``epoch``."""
    return np.random.SeedSequence([stream_seed, epoch, index]).generate_state(2).astype(np.uint32)


def epoch_order(stream_seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled row order of ``epoch``."""
    return np.random.default_rng([stream_seed, epoch, 0x5EED]).permutation(n)


def soften(probs: Sequence[Any], temperature: float) -> Any:
    """Average the teachers' probabilities, then soften them: p ** (1/T), renormalized."""
    p = ops.mean(ops.stack(list(probs)), axis=0)
    return ops.softmax(ops.log(ops.clip(p, 1e-7, 1.0)) / temperature, axis=-1)


def mix_targets(y: Any, soft: Any, alpha: float) -> Any:
    return (1.0 - alpha) * y + alpha * ops.cast(soft, y.dtype)


def _compile(fn: Callable) -> Callable:
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _teacher_state(teacher: Any) -> tuple[list, list]:
    return ([v.value for v in teacher.trainable_variables], [v.value for v in teacher.non_trainable_variables])


def teacher_probs(teachers: Sequence[Any], x: Any, states: Sequence[tuple[list, list]] | None = None) -> list:
    """Each teacher's probabilities on ``x`` and on its mirror image (flip-averaged teacher)."""
    probs = []
    for i, teacher in enumerate(teachers):
        for view in (x, ops.flip(x, axis=2)):
            if states is None:
                probs.append(teacher(view, training=False))
            else:
                probs.append(teacher.stateless_call(*states[i], view, training=False)[0])
    return probs


def precompute_soft_targets(teachers: Sequence[Any], images: np.ndarray, temperature: float,
                            batch_size: int = 512) -> np.ndarray:
    """The teachers' softened, flip-averaged distribution on each clean training face (float32, N x C)."""
    x = images[..., None].astype(np.float32)
    probs = [teacher.predict(view, batch_size=batch_size, verbose=0)
             for teacher in teachers for view in (x, x[:, :, ::-1])]
    return np.asarray(ops.convert_to_numpy(soften(probs, temperature)), dtype=np.float32)


class DeviceBatches(keras.utils.PyDataset):
    """Training batches built on the accelerator from device-resident uint8 images (see module docstring).

    ``epoch`` must be set before each epoch (``EpochSetter`` does it from ``fit``'s callbacks).
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, weights: np.ndarray, batch_size: int, *,
                 augment: AugmentConfig, seed: int, teachers: Sequence[Any] = (), kd_alpha: float = 0.0,
                 kd_temperature: float = 1.0, epoch: int = 0):
        super().__init__()
        self.n, self.batch_size, self.seed, self.epoch = len(images), batch_size, seed, epoch
        self._images = ops.convert_to_tensor(images)  # uint8 stays uint8 on the device
        self._targets = ops.convert_to_tensor(targets.astype(np.float32))
        self._weights = ops.convert_to_tensor(weights.astype(np.float32))
        self._teachers = list(teachers)
        self._order: tuple[int, np.ndarray] | None = None
        states = [_teacher_state(t) for t in self._teachers]

        def build(images, targets, weights, idx, batch_seed_, teacher_states):
            x = ops.expand_dims(ops.cast(ops.take(images, idx, axis=0), "float32"), -1)
            x = augment_batch(x, augment, batch_seed_)
            y = ops.take(targets, idx, axis=0)
            if self._teachers:
                y = mix_targets(y, soften(teacher_probs(self._teachers, x, teacher_states), kd_temperature), kd_alpha)
            return x, y, ops.take(weights, idx, axis=0)

        compiled = _compile(build)
        self._build = lambda idx, s: compiled(self._images, self._targets, self._weights, idx, s, states)

    @property
    def num_batches(self) -> int:
        return self.n // self.batch_size  # drop the remainder, as the tf.data path does

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int) -> tuple[Any, Any, Any]:
        if self._order is None or self._order[0] != self.epoch:
            self._order = (self.epoch, epoch_order(self.seed, self.epoch, self.n).astype(np.int32))
        idx = self._order[1][index * self.batch_size : (index + 1) * self.batch_size]
        return self._build(idx, batch_seed(self.seed, self.epoch, index))


def epoch_setter(batches: DeviceBatches) -> keras.callbacks.Callback:
    class EpochSetter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batches.epoch = epoch

    return EpochSetter()
