import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.contract import (
    FER2013_LABELS,
    FERPLUS_LABELS,
    ModelCard,
    ModelCardError,
    canonical_label,
    card_path_for,
    sha256_file,
    verify_artifact,
)


def test_label_order_is_fer2013():
    assert FER2013_LABELS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert FERPLUS_LABELS[:7] == FER2013_LABELS and FERPLUS_LABELS[7] == "contempt"


@pytest.mark.parametrize(("name", "label"), [("Anger", "angry"), ("disgusted", "disgust"), ("fearful", "fear"),
                                             ("happiness", "happy"), ("SADNESS", "sad"), ("surprised", "surprise"),
                                             ("bored", None)])
def test_label_synonyms(name, label):
    assert canonical_label(name) == label


def test_card_round_trip_and_hashes(tmp_path: Path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"weights")
    card = ModelCard(name="m", architecture="edgefer", labels=list(FER2013_LABELS), parameters=10)
    card.add_artifact("keras", model)
    path = card.save(card_path_for(model))
    assert path.name == "m.card.json"
    loaded = ModelCard.load(path)
    assert loaded.labels == list(FER2013_LABELS)
    assert loaded.input.pixel_range == (0.0, 255.0)
    assert loaded.artifacts["keras"]["sha256"] == sha256_file(model)
    assert verify_artifact(loaded, tmp_path, "keras") == model
    model.write_bytes(b"tampered")
    with pytest.raises(ModelCardError, match="differs from the card"):
        verify_artifact(loaded, tmp_path, "keras")


def test_card_paths_share_one_card():
    assert card_path_for("models/fer_edge_int8.tflite") == Path("models/fer_edge.card.json")
    assert card_path_for("models/fer_edge.keras") == Path("models/fer_edge.card.json")
    assert card_path_for("models/fer_edge_float16.tflite") == Path("models/fer_edge.card.json")


def test_card_errors_name_file_and_field(tmp_path: Path):
    with pytest.raises(ModelCardError, match="not found"):
        ModelCard.load(tmp_path / "missing.card.json")
    bad = tmp_path / "bad.card.json"
    bad.write_text("{not json")
    with pytest.raises(ModelCardError, match=r"bad\.card\.json: not valid JSON"):
        ModelCard.load(bad)
    bad.write_text(json.dumps({"name": "x", "architecture": "y"}))
    with pytest.raises(ModelCardError, match=r"lacks field.*labels"):
        ModelCard.load(bad)


def test_edge_never_imports_tensorflow():
    code = (
        "import sys, pkgutil, importlib, edge\n"
        "for m in pkgutil.walk_packages(edge.__path__, 'edge.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
