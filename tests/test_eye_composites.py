"""Eye patches cut from whole faces the way the daemon cuts them (train.eye_composites, the ``cew-faces`` data
set), on scikit-image's astronaut photo reduced to a FER2013-sized face: its own eyes, and closed lids pasted
on them."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import EYES, astronaut_bgr
from conftest import pattern_face, write_fer_csv

from edge.config import AppConfig
from edge.contract import EYE_STATE_LABELS
from edge.vision.classifier import load_model_with_card
from edge.vision.detect import HaarFaceDetector, crop_face
from train import eye_composites
from train.datasets import SPLITS, load_cew_eyes, load_eyes_in_faces, load_fer2013_csv
from train.eye_composites import KINDS, PAD, composite_eye_patches, find_eyes, upscale_head

MODELS = Path(__file__).resolve().parent.parent / "models"
CLOSED, OPEN = EYE_STATE_LABELS.index("closed"), EYE_STATE_LABELS.index("open")


def grey(eyes_closed: bool = False) -> np.ndarray:
    return cv2.cvtColor(astronaut_bgr(eyes_closed), cv2.COLOR_BGR2GRAY)


@pytest.fixture(scope="module")
def box() -> tuple[int, int, int, int]:
    boxes = HaarFaceDetector(AppConfig().detector).detect(grey())
    assert len(boxes) == 1
    return boxes[0]


def face48(box, eyes_closed: bool = False) -> np.ndarray:
    return crop_face(grey(eyes_closed), box, 48)


def eye_crops(eyes_closed: bool) -> np.ndarray:
    """The astronaut's own eyes, CEW-style (a tight square around each eye), 24x24."""
    g = grey(eyes_closed)
    return np.stack([cv2.resize(g[cy - 16 : cy + 16, cx - 16 : cx + 16], (24, 24), interpolation=cv2.INTER_AREA)
                     for cx, cy in EYES])


def test_the_eye_cascade_finds_the_eyes_of_a_48px_face_once_upscaled(box):
    side = 120
    eyes = find_eyes(upscale_head(face48(box), side))
    assert eyes is not None
    x, y, w, h = box
    scale = side / max(w, h)  # photo pixels -> head pixels
    x0, y0 = x + w / 2 - max(w, h) / 2, y + h / 2 - max(w, h) / 2
    for (ex, ey, ew, eh), (tx, ty) in zip(eyes, EYES, strict=True):
        true = ((tx - x0) * scale + PAD * side / 48, (ty - y0) * scale + PAD * side / 48)
        assert np.hypot(ex + ew / 2 - true[0], ey + eh / 2 - true[1]) < 0.06 * side


def test_composites_are_labelled_by_what_is_on_the_eyes(box):
    faces = np.stack([face48(box)] * 6)
    images, labels, kinds = composite_eye_patches(faces, eye_crops(False), eye_crops(True),
                                                  np.random.default_rng(0), sides=(110, 160), pasted_open_share=1.0)
    assert images.shape[1:] == (24, 24) and images.dtype == np.uint8
    counts = np.bincount(kinds, minlength=3)
    assert counts.tolist() == [12, 12, 12]  # every face: its two eyes, two pasted closed, two pasted open
    assert (labels[kinds == KINDS.index("pasted_closed")] == CLOSED).all()
    assert (labels[kinds != KINDS.index("pasted_closed")] == OPEN).all()
    # The shipped eye model agrees: the face's own eyes and pasted open eyes open, pasted lids closed.
    model, card = load_model_with_card(MODELS / "eye_state_int8.tflite")
    closed_p = model.predict(images[:, :, :, None].astype(np.float32))[:, card.labels.index("closed")]
    assert closed_p[kinds == KINDS.index("pasted_closed")].min() > 0.5
    assert closed_p[kinds != KINDS.index("pasted_closed")].max() < 0.5


def test_a_face_without_a_plausible_eye_pair_gives_no_patches():
    stripes = np.stack([pattern_face(0, np.random.default_rng(k)) for k in range(3)])
    images, labels, kinds = composite_eye_patches(stripes, eye_crops(False), eye_crops(True), np.random.default_rng(0))
    assert len(images) == len(labels) == len(kinds) == 0


def photo_names(cls: str) -> list[str]:
    """Two photo names that load_cew_eyes holds out for selection (by the hash of the name) and two it trains on."""
    held, kept = [], []
    for k in range(200):
        name = f"{cls}{k}"
        (held if hashlib.sha256(name.encode()).digest()[0] / 255.0 < 0.15 else kept).append(name)
    return held[:2] + kept[:2]


def test_each_split_gains_composites_from_its_own_faces_and_patches(tmp_path: Path, box, monkeypatch):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls, crops in (("closed", eye_crops(True)), ("open", eye_crops(False))):
            folder = tmp_path / "cew" / "dataset" / split / cls
            folder.mkdir(parents=True)
            for photo in photo_names(cls):  # CEW-like photos: the two eyes of one face, with a little noise
                for side, crop in zip("LR", crops, strict=True):
                    noisy = np.clip(crop + rng.normal(0, 3, (24, 24)), 0, 255).astype(np.uint8)
                    cv2.imwrite(str(folder / f"{photo}_{side}.png"), noisy)
    astronaut = face48(box)
    rows = [(3, astronaut, "Training"), (3, astronaut, "Training"), (6, pattern_face(6, rng), "Training"),
            (3, astronaut, "PublicTest"), (0, pattern_face(0, rng), "PrivateTest"), (3, astronaut, "PrivateTest")]
    csv = write_fer_csv(tmp_path / "fer2013.csv", rows)
    fer = load_fer2013_csv(csv)
    cew = load_cew_eyes(tmp_path / "cew")
    calls = []
    real = eye_composites.composite_eye_patches

    def recording(faces, open_patches, closed_patches, *args, **kwargs):
        calls.append((faces, open_patches, closed_patches))
        return real(faces, open_patches, closed_patches, *args, **kwargs)

    monkeypatch.setattr(eye_composites, "composite_eye_patches", recording)
    ds = load_eyes_in_faces(tmp_path / "cew", csv, cache_dir=tmp_path / "cache")
    assert [len(cew.splits[s]) for s in SPLITS] == [8, 8, 16]
    # Each split's composites are made from that split's FER2013 faces and that split's CEW patches only.
    assert len(calls) == 3
    for split, (faces, open_patches, closed_patches) in zip(SPLITS, calls, strict=True):
        own = cew.splits[split]
        assert sorted(map(bytes, faces)) == sorted(map(bytes, fer.splits[split].images))
        assert np.array_equal(open_patches, own.images[own.labels == EYE_STATE_LABELS.index("open")])
        assert np.array_equal(closed_patches, own.images[own.labels == EYE_STATE_LABELS.index("closed")])
    added = {s: len(ds.splits[s]) - len(cew.splits[s]) for s in cew.splits}
    # Two astronaut faces in Training, one in each test split; the striped faces give nothing. Each face
    # adds 4 or 6 patches (its own eyes, pasted closed, pasted open half of the time).
    assert added["Training"] in (8, 10, 12) and added["PublicTest"] in (4, 6) and added["PrivateTest"] in (4, 6)
    for split, data in ds.splits.items():  # the split's CEW patches come first, unchanged
        assert np.array_equal(data.images[: len(cew.splits[split])], cew.splits[split].images)
    assert ds.name == "cew-faces" and ds.labels == EYE_STATE_LABELS

    def must_not_run(*args, **kwargs):
        raise AssertionError("composites rebuilt although the cache holds them")

    monkeypatch.setattr(eye_composites, "composite_eye_patches", must_not_run)
    again = load_eyes_in_faces(tmp_path / "cew", csv, cache_dir=tmp_path / "cache")
    for split, data in ds.splits.items():
        assert np.array_equal(again.splits[split].images, data.images)
        assert np.array_equal(again.splits[split].labels, data.labels)
    # A changed CEW patch is a different data set: the cache must not serve the old composites.
    changed = next((tmp_path / "cew" / "dataset" / "val" / "closed").glob("*.png"))
    cv2.imwrite(str(changed), np.full((24, 24), 90, np.uint8))
    with pytest.raises(AssertionError, match="rebuilt"):
        load_eyes_in_faces(tmp_path / "cew", csv, cache_dir=tmp_path / "cache")


def test_the_benchmark_skips_a_closed_run_whose_pair_was_not_both_eyes(box):
    """scripts/real_face_sequences.py: a closed run is built only when the pasted pair covered both eyes."""
    import sys

    sys.path.insert(0, str(MODELS.parent / "scripts"))
    from real_face_sequences import eyes_inside_face, open_eye_left

    side = 120
    head = upscale_head(face48(box), side)
    eyes = find_eyes(head)
    assert eyes is not None
    shut = eye_crops(True)
    both = eye_composites.paste_eyes(head, eyes, list(shut), side)
    assert both is not None
    assert eyes_inside_face(eyes, side) and not open_eye_left(both, eyes, side)
    # A "pair" of the left eye and a spot beside it: the right eye stays open and the cascade still finds it.
    (lx, ly, lw, lh), (rx, _, _, _) = eyes
    stray = (max(0, lx - (rx - lx) // 2), ly, lw, lh)
    wrong = [stray, eyes[0]]
    one = eye_composites.paste_eyes(head, wrong, list(shut), side)
    assert one is not None and open_eye_left(one, wrong, side)
    # A box in the replicated border around the 48-px face is no eye.
    border = [eyes[0], (round((PAD + 48) * side / 48) - lw // 2, ly, lw, lh)]
    assert not eyes_inside_face(border, side)
