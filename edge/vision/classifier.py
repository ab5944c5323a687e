"""Classifier back-ends: LiteRT (ai-edge-litert), tflite-runtime, and onnxruntime.

The interpreter is created once and reused for every face. All back-ends take uint8 grey crops of
the model's input size, raw 0-255, shape (N, H, W) or (H, W), and return float32 probabilities
(N, C); quantization and dtype handling stay inside this module. Models converted by fer-convert
carry a second output, pairwise logit margins (see ``edge.vision.tiebreak``), which settles exact top-1
ties of int8 probabilities.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from edge.contract import ModelCard, ModelCardError, card_path_for, verify_model_bytes
from edge.vision.tiebreak import break_ties, margin_count

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model file is missing, corrupt, or no runtime can load it."""


class Classifier(Protocol):
    backend: str
    input_size: tuple[int, int]
    num_classes: int

    def predict(self, crops: np.ndarray) -> np.ndarray: ...


def split_outputs(sizes: list[int], path: Path) -> tuple[int, int | None]:
    """Which output holds the probabilities (C) and which the pairwise margins (C(C-1)/2), if any.

    Outputs come in the Keras model's order (probabilities first); the sizes confirm it.
    """
    if len(sizes) == 1:
        return 0, None
    if len(sizes) == 2 and margin_count(sizes[0]) == sizes[1]:
        return 0, 1
    if len(sizes) == 2 and margin_count(sizes[1]) == sizes[0]:
        return 1, 0
    raise ModelLoadError(f"{path}: expected a probability output (and optionally pairwise margins), "
                         f"got outputs of sizes {sizes}")


def _interpreter_class():
    """LiteRT first; tflite-runtime is the fallback (numpy<2, far slower int8)."""
    candidates = (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime"))
    for module, name in candidates:
        try:
            return importlib.import_module(module).Interpreter, name
        except ImportError:
            continue
    raise ModelLoadError("no TFLite runtime installed: pip install ai-edge-litert (64-bit OS) or tflite-runtime")


class TFLiteClassifier:
    def __init__(self, path: str | Path, num_threads: int = 1, content: bytes | None = None):
        """``content``: the file's bytes, already read (and verified) by the caller; parsed instead of the file."""
        path = Path(path)
        if content is None and not path.is_file():
            raise ModelLoadError(f"{path}: model file not found")
        interpreter_cls, self.backend = _interpreter_class()
        try:
            source = {"model_path": str(path)} if content is None else {"model_content": content}
            self._interpreter = interpreter_cls(**source, num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{path}: not a loadable TFLite model ({exc})") from None
        self.path = path
        inp = self._interpreter.get_input_details()[0]
        outputs = sorted(self._interpreter.get_output_details(), key=lambda o: o["name"])
        prob_at, margin_at = split_outputs([int(o["shape"][-1]) for o in outputs], path)
        out = outputs[prob_at]
        self._margin_index = None if margin_at is None else outputs[margin_at]["index"]
        self._margin_zero = 0 if margin_at is None else int(outputs[margin_at]["quantization"][1])
        self.ties_broken = 0  # top-1 ties settled by the margins head since load
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype, self._out_dtype = inp["dtype"], out["dtype"]
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_scale, self._out_zero = out["quantization"]
        _, h, w, c = inp["shape"]
        if c != 1:
            raise ModelLoadError(f"{path}: expected a 1-channel grey input, model has {c} channels")
        self.input_size = (int(h), int(w))
        self.num_classes = int(out["shape"][-1])
        self._batch = int(inp["shape"][0])

    @property
    def quantized(self) -> bool:
        return self._in_dtype in (np.uint8, np.int8)

    def _prepare(self, crops: np.ndarray) -> np.ndarray:
        x = crops.astype(np.float32)[..., None]
        if self._in_dtype == np.uint8 and self._in_scale == 1.0 and self._in_zero == 0:
            return crops.astype(np.uint8)[..., None]  # raw pixels are already the quantized values
        if self._in_dtype in (np.uint8, np.int8):
            info = np.iinfo(self._in_dtype)
            q = np.round(x / self._in_scale + self._in_zero)
            return np.clip(q, info.min, info.max).astype(self._in_dtype)
        return x.astype(self._in_dtype)

    def raw_predict(self, crops: np.ndarray) -> np.ndarray:
        """The probability tensor as stored (quantized integers for int8 models), shape (N, C)."""
        return self._run(crops)[0]

    def _run(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        crops = _as_batch(crops, self.input_size)
        x = self._prepare(crops)
        out = np.empty((len(x), self.num_classes), dtype=self._out_dtype)
        if len(x) != self._batch:
            self._interpreter.resize_tensor_input(self._in_index, [len(x), *self.input_size, 1])
            self._interpreter.allocate_tensors()
            self._batch = len(x)
        self._interpreter.set_tensor(self._in_index, x)
        self._interpreter.invoke()
        out[:] = self._interpreter.get_tensor(self._out_index)
        margins = None if self._margin_index is None else self._interpreter.get_tensor(self._margin_index).copy()
        return out, margins

    def predict(self, crops: np.ndarray) -> np.ndarray:
        raw, margins = self._run(crops)
        if self._out_dtype not in (np.uint8, np.int8):
            return raw.astype(np.float32)
        probs = ((raw.astype(np.float32) - self._out_zero) * self._out_scale).astype(np.float32)
        if margins is None:
            return probs
        # Only the margins' signs matter, and the zero point is exactly 0.
        probs, ties = break_ties(probs, margins.astype(np.int32) - self._margin_zero, self._out_scale)
        self.ties_broken += ties
        return probs


class OnnxClassifier:
    def __init__(self, path: str | Path, num_threads: int = 1, content: bytes | None = None):
        path = Path(path)
        if content is None and not path.is_file():
            raise ModelLoadError(f"{path}: model file not found")
        try:
            ort = importlib.import_module("onnxruntime")
        except ImportError:
            raise ModelLoadError("onnxruntime is not installed: pip install fer-edge[onnx]") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path) if content is None else content, options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"{path}: not a loadable ONNX model ({exc})") from None
        self.backend = "onnxruntime"
        self.path = path
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        _, h, w, _ = inp.shape
        self.input_size = (int(h), int(w))
        outputs = self._session.get_outputs()
        self._prob_at, _ = split_outputs([int(o.shape[-1]) for o in outputs], path)
        self.num_classes = int(outputs[self._prob_at].shape[-1])

    def predict(self, crops: np.ndarray) -> np.ndarray:
        crops = _as_batch(crops, self.input_size)
        x = crops.astype(np.float32)[..., None]
        # Float outputs practically never tie exactly, so the margins output is not needed here.
        return np.asarray(self._session.run(None, {self._input_name: x})[self._prob_at], dtype=np.float32)


def _as_batch(crops: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim == 2:
        crops = crops[None]
    if crops.ndim == 4 and crops.shape[-1] == 1:
        crops = crops[..., 0]
    if crops.ndim != 3 or crops.shape[1:] != size:
        raise ValueError(f"expected grey crops of shape (N, {size[0]}, {size[1]}), got {crops.shape}")
    return crops


def load_classifier(path: str | Path, num_threads: int = 1, backend: str = "auto",
                    content: bytes | None = None) -> Classifier:
    """Open a ``.tflite`` or ``.onnx`` model; ``backend`` is auto, tflite or onnx."""
    path = Path(path)
    kind = backend if backend != "auto" else ("onnx" if path.suffix == ".onnx" else "tflite")
    if kind == "onnx":
        return OnnxClassifier(path, num_threads, content)
    if kind == "tflite":
        return TFLiteClassifier(path, num_threads, content)
    raise ValueError(f"unknown classifier backend {backend!r} (auto, tflite or onnx)")


def load_model_with_card(path: str | Path, num_threads: int = 1, backend: str = "auto",
                         verify: bool = True) -> tuple[Classifier, ModelCard]:
    """Load a model and its card; the labels come from the card and must match the model's outputs.

    With ``verify`` the file's bytes must hash to one of the card's artifacts (by hash, not by name),
    and the runtime parses exactly the bytes that were checked.
    """
    path = Path(path)
    card_file = card_path_for(path)
    card = ModelCard.load(card_file)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: model file not found") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the model ({exc.strerror})") from None
    if verify:
        verify_model_bytes(card, card_file, path, content)
    else:
        log.warning("%s: integrity check off (verify_hash: false): not checked against %s", path, card_file.name)
    classifier = load_classifier(path, num_threads, backend, content)
    if classifier.num_classes != len(card.labels):
        raise ModelCardError(
            f"{card_file}: card lists {len(card.labels)} labels but {path.name} has {classifier.num_classes} outputs"
        )
    if classifier.input_size != (card.input.height, card.input.width):
        raise ModelCardError(f"{card_file}: card input {card.input.height}x{card.input.width} differs from "
                             f"{path.name}'s {classifier.input_size[0]}x{classifier.input_size[1]}")
    return classifier, card
