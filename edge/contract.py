"""The model contract: the one place that defines labels, input format and the model card.

train/ and convert/ import this module; the device reads labels from the card shipped beside
each model, so a model with another label set (FER+, eye state) works without code changes.

Input contract for every shipped model: a batch of ``height x width x 1`` grey images with raw
0-255 pixel values (float32 for Keras/float TFLite/ONNX, uint8 or int8 for the int8 TFLite; the
card's ``input`` block says which). Normalization happens inside the graph.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# FER2013 label order (the `emotion` column of the Kaggle CSV). Never reorder.
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# FER+ adds contempt; we keep FER2013's indices and append it so 0-6 mean the same in both.
FERPLUS_LABELS: tuple[str, ...] = (*FER2013_LABELS, "contempt")
EYE_STATE_LABELS: tuple[str, ...] = ("closed", "open")

FACE_INPUT_SIZE = 48
EYE_INPUT_SIZE = 24
PIXEL_RANGE = (0.0, 255.0)

# Expressions that count as distress for the alert rules (probability mass summed).
DISTRESS_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "sad")

# Class-name synonyms found in image-folder datasets (Kaggle copies, AffectNet-style names).
LABEL_SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "scared": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
    "contempt": "contempt",
    "closed": "closed",
    "close": "closed",
    "open": "open",
}

CARD_SCHEMA_VERSION = 1
CARD_SUFFIX = ".card.json"


def canonical_label(name: str) -> str | None:
    """Map a folder or column name to the canonical label, or None when it is unknown."""
    return LABEL_SYNONYMS.get(name.strip().lower())


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: NHWC grey images of raw pixel values."""

    height: int = FACE_INPUT_SIZE
    width: int = FACE_INPUT_SIZE
    channels: int = 1
    pixel_range: tuple[float, float] = PIXEL_RANGE
    dtype: str = "float32"
    normalization: str = "inside-graph"
    # How a face box from the detector becomes the model's crop. FER2013 faces are tight,
    # roughly centred crops; the edge expands the Haar box by this factor around its centre.
    crop_scale: float = 1.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "pixel_range" in known:
            known["pixel_range"] = tuple(float(v) for v in known["pixel_range"])
        return cls(**known)


@dataclass
class ModelCard:
    """Everything a user or the device needs to know about one trained model."""

    name: str
    architecture: str
    labels: list[str]
    input: InputSpec = field(default_factory=InputSpec)
    parameters: int = 0
    task: str = "expression"
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    schema_version: int = CARD_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input"]["pixel_range"] = list(self.input.pixel_range)
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> ModelCard:
        missing = [k for k in ("name", "architecture", "labels") if k not in data]
        if missing:
            raise ModelCardError(f"{source}: model card lacks field(s) {', '.join(missing)}")
        labels = data["labels"]
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise ModelCardError(f"{source}: field 'labels' must be a non-empty list of strings")
        kwargs = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "input"}
        kwargs["input"] = InputSpec.from_dict(data.get("input", {}))
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelCardError(f"{path}: model card not found") from None
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ModelCardError(f"{path}: a model card must be a JSON object")
        return cls.from_dict(data, source=str(path))

    def add_artifact(self, key: str, path: str | Path, **extra: Any) -> None:
        """Record a file next to the card (name relative to the card, size, SHA-256)."""
        path = Path(path)
        self.artifacts[key] = {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), **extra}


class ModelCardError(ValueError):
    """A model card is missing, unreadable or incomplete."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path_for(model_path: str | Path) -> Path:
    """``models/fer_edge.keras`` and ``models/fer_edge_int8.tflite`` share ``models/fer_edge.card.json``."""
    model_path = Path(model_path)
    stem = model_path.name.split(".")[0]
    for suffix in ("_int8", "_float16", "_float32", "_fp16", "_fp32"):
        stem = stem.removesuffix(suffix)
    return model_path.with_name(stem + CARD_SUFFIX)


def verify_artifact(card: ModelCard, card_dir: str | Path, key: str) -> Path:
    """Return the artifact's path after checking it exists and matches the card's hash."""
    entry = card.artifacts.get(key)
    if entry is None:
        raise ModelCardError(f"model card '{card.name}' lists no artifact '{key}' (has: {sorted(card.artifacts)})")
    path = Path(card_dir) / entry["file"]
    if not path.is_file():
        raise ModelCardError(f"{path}: artifact '{key}' listed in the model card is missing")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise ModelCardError(f"{path}: SHA-256 {actual[:12]}... differs from the card's {entry['sha256'][:12]}...")
    return path


class ModelIntegrityError(ModelCardError):
    """A model file whose SHA-256 is not among its card's artifacts."""


def verify_model_bytes(card: ModelCard, card_file: str | Path, model_path: str | Path, content: bytes) -> str:
    """The card's artifact key whose SHA-256 matches ``content``, matched by hash, whatever the file's name.

    Raises :class:`ModelIntegrityError` (one line) when no artifact of the card has this hash.
    """
    actual = hashlib.sha256(content).hexdigest()
    for key, entry in card.artifacts.items():
        if entry.get("sha256") == actual:
            return key
    name = Path(model_path).name
    listed = next((k for k, e in card.artifacts.items() if e.get("file") == name), None)
    why = (f"differs from the card's '{listed}' artifact ({str(card.artifacts[listed].get('sha256'))[:12]}...)"
           if listed else f"matches no artifact of {Path(card_file).name}")
    raise ModelIntegrityError(f"{model_path}: SHA-256 {actual[:12]}... {why}: refusing a modified or unknown "
                              "model (to run it anyway: verify_hash: false, or --allow-unverified-models)")
