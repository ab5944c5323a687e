"""fer-train ensemble: members' and softmax-average accuracy, on hand-made predictions and on a real model."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.contract import FER2013_LABELS, ModelCard
from train.datasets import Dataset, SplitData
from train.ensemble import average_probs, compare_ensemble

# Four faces of classes 0, 1, 2, 0. A alone gets 2 right, B alone 3, their average all 4 (worked by hand).
LABELS = np.array([0, 1, 2, 0])
A = [[.9, .1, 0], [.2, .7, .1], [.1, .6, .3], [.3, .4, .3]]
B = [[.8, .1, .1], [.1, .3, .6], [.1, .1, .8], [.6, .1, .3]]


def _padded(rows):
    return np.pad(np.asarray(rows, np.float32), ((0, 0), (0, 4)))


class _FixedModel:
    """Answers `plain` for upright faces (bright left edge) and `mirrored` for flipped ones."""

    def __init__(self, plain, mirrored):
        self.plain, self.mirrored = _padded(plain), _padded(mirrored)

    def predict(self, x, batch_size=None, verbose=0):
        upright = x[:, 0, 0, 0] > x[:, 0, -1, 0]
        assert upright.all() or not upright.any()
        return self.plain if upright.all() else self.mirrored


def _dataset() -> Dataset:
    images = np.zeros((4, 48, 48), np.uint8)
    images[:, :, 0] = 255
    return Dataset("fer2013", FER2013_LABELS, {"PublicTest": SplitData(images, LABELS)}, "hand-made")


def test_the_ensemble_averages_member_probabilities():
    rows = compare_ensemble([("A", _FixedModel(A, B)), ("B", _FixedModel(B, A))], _dataset(),
                            splits=["PublicTest"], tta_flip=True)
    got = {(r.name, r.tta_flip): r.accuracy for r in rows}
    # Each member's mirror answers are the other member's, so flip-averaging one member equals the ensemble.
    assert got == {("A", False): 0.5, ("A", True): 1.0, ("B", False): 0.75, ("B", True): 1.0,
                   ("ensemble", False): 1.0, ("ensemble", True): 1.0}
    assert average_probs([_padded(A), _padded(B)])[3, :3] == pytest.approx([.45, .25, .3])


def test_members_must_agree_on_the_output_shape():
    with pytest.raises(ValueError, match="output shape"):
        average_probs([np.zeros((4, 7)), np.zeros((4, 8))])
    with pytest.raises(ValueError, match="at least one"):
        average_probs([])


def test_an_empty_split_is_named():
    with pytest.raises(ValueError, match="split 'PrivateTest' is empty"):
        compare_ensemble([("A", _FixedModel(A, A))], _dataset(), splits=["PrivateTest"])


@pytest.mark.slow
def test_cli_on_a_trained_model_matches_its_card(tiny_model_dir: Path, tmp_path: Path, capsys):
    from train.cli import main

    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir / "models", models)
    shutil.copy(models / "tiny.keras", models / "twin.keras")
    shutil.copy(models / "tiny.card.json", models / "twin.card.json")
    common = ["--data", str(tiny_model_dir / "data"), "--cache-dir", str(tmp_path / "c")]
    out = tmp_path / "rows.json"
    assert main(["ensemble", str(models / "tiny.keras"), str(models / "twin.keras"), *common, "--tta-flip",
                 "--json", str(out)]) == 0
    assert "| PrivateTest | ensemble | + flip |" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert len(rows) == 2 * (2 * 2 + 2)  # per split: two members and the ensemble, each plain and flipped
    card = ModelCard.load(models / "tiny.card.json")
    for split in ("PublicTest", "PrivateTest"):
        plain = {r["name"]: r["accuracy"] for r in rows if r["split"] == split and not r["tta_flip"]}
        # Twins: the ensemble is the model itself, whose accuracy fer-train evaluate put on the card.
        assert set(plain) == {str(models / "tiny.keras"), str(models / "twin.keras"), "ensemble"}
        assert list(plain.values()) == pytest.approx([card.metrics["keras"][split]["accuracy"]] * 3)

    card.labels = list(reversed(card.labels))
    card.save(models / "twin.card.json")
    assert main(["ensemble", str(models / "tiny.keras"), str(models / "twin.keras"), *common]) == 2
    assert "twin.keras: labels" in capsys.readouterr().err
    assert main(["ensemble", str(models / "gone.keras"), *common]) == 2
    assert "gone.keras: model not found" in capsys.readouterr().err
