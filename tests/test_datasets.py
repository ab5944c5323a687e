import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import fer_rows, pattern_face, write_fer_csv

from edge.contract import EYE_STATE_LABELS, FER2013_LABELS
from train.datasets import (
    DatasetError,
    load_cew_eyes,
    load_fer2013_csv,
    load_ferplus,
    load_image_folders,
)


@pytest.mark.parametrize("fixture", ["fer_csv", "fer_csv_gz"])
def test_fer2013_csv_loads_all_splits(fixture, request):
    path = request.getfixturevalue(fixture)
    ds = load_fer2013_csv(path)
    assert ds.labels == FER2013_LABELS
    assert {s: len(d) for s, d in ds.splits.items()} == {"Training": 70, "PublicTest": 21, "PrivateTest": 21}
    rows = fer_rows()
    assert np.array_equal(ds.splits["Training"].images[3], rows[3][1])
    assert ds.splits["PublicTest"].labels[:7].tolist() == list(range(7))
    assert ds.splits["PrivateTest"].rows[0] == 91  # data-row numbers survive for traceability


def _row(label="3", pixels=None, usage="Training"):
    pixels = pixels if pixels is not None else " ".join(["7"] * 2304)
    return f"{label},{pixels},{usage}"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (_row(pixels=" ".join(["7"] * 2303)), "expected 2304 pixel values, found 2303"),
        (_row(pixels=" ".join(["7"] * 2303 + ["x7"])), "non-numeric pixel value 'x7'"),
        (_row(pixels=" ".join(["7"] * 2303 + ["256"])), "must lie in 0-255"),
        (_row(label="9"), "unknown emotion label '9'"),
        (_row(label="happy"), "unknown emotion label 'happy'"),
        (_row(usage="Validation"), "unknown Usage 'Validation'"),
    ],
)
def test_fer2013_bad_rows_name_file_and_row(tmp_path: Path, line: str, message: str):
    path = write_fer_csv(tmp_path / "bad.csv", extra_lines=[line])
    with pytest.raises(DatasetError) as info:
        load_fer2013_csv(path)
    text = str(info.value)
    assert str(path) in text and "row 112 (line 114)" in text and message in text
    ds = load_fer2013_csv(path, skip_bad=True)
    assert ds.skipped == 1 and len(ds.splits["Training"]) == 70
    assert "skipped 1 bad row(s)" in ds.notes


def test_fer2013_bad_header_and_missing_file(tmp_path: Path):
    bad = tmp_path / "h.csv"
    bad.write_text("label,pixels\n1,2\n")
    with pytest.raises(DatasetError, match="header must contain"):
        load_fer2013_csv(bad)
    with pytest.raises(DatasetError, match="not found"):
        load_fer2013_csv(tmp_path / "nope.csv")


def test_empty_split_is_reported(tmp_path: Path):
    path = write_fer_csv(tmp_path / "f.csv", rows=fer_rows({"Training": 14, "PublicTest": 7}))
    ds = load_fer2013_csv(path)
    assert len(ds.split("Training")) == 14
    with pytest.raises(DatasetError, match=r"split 'PrivateTest' is empty"):
        ds.split("PrivateTest")


def test_cache_makes_second_load_use_the_npz(tmp_path: Path, fer_csv: Path):
    cache = tmp_path / "cache"
    first = load_fer2013_csv(fer_csv, cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1
    fer_csv.with_name("renamed.csv")  # the source stays; the cache is keyed on path, size and mtime
    second = load_fer2013_csv(fer_csv, cache_dir=cache)
    for split in first.splits:
        assert np.array_equal(first.splits[split].images, second.splits[split].images)
        assert np.array_equal(first.splits[split].labels, second.splits[split].labels)
    # Changing the file invalidates the cache.
    write_fer_csv(fer_csv, rows=fer_rows({"Training": 7, "PublicTest": 7, "PrivateTest": 7}))
    third = load_fer2013_csv(fer_csv, cache_dir=cache)
    assert len(third.splits["Training"]) == 7


def _write_votes(path: Path, vote_rows: list[tuple[str, str, list[int]]]) -> Path:
    header = ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
              "contempt", "unknown", "NF"]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for usage, name, votes in vote_rows:
            writer.writerow([usage, name, *votes])
    return path


def test_ferplus_majority_soft_labels_and_drops(tmp_path: Path):
    rows = fer_rows({"Training": 5, "PublicTest": 1, "PrivateTest": 1})
    fer = write_fer_csv(tmp_path / "fer2013.csv", rows=rows)
    votes = _write_votes(tmp_path / "fer2013new.csv", [
        ("Training", "fer0.png", [0, 8, 2, 0, 0, 0, 0, 0, 0, 0]),  # happy 8, surprise 2
        ("Training", "fer1.png", [0, 0, 0, 0, 0, 0, 0, 0, 2, 8]),  # not a face -> dropped
        ("Training", "fer2.png", [4, 0, 0, 4, 0, 0, 0, 0, 2, 0]),  # no majority -> dropped
        ("Training", "", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),  # empty image name -> dropped
        ("Training", "fer4.png", [1, 0, 0, 0, 0, 0, 0, 9, 0, 0]),  # contempt 9, outlier vote removed
        ("PublicTest", "fer5.png", [0, 0, 0, 0, 10, 0, 0, 0, 0, 0]),  # anger
        ("PrivateTest", "fer6.png", [0, 0, 0, 6, 0, 0, 3, 0, 1, 0]),  # sad 6, fear 3
    ])
    ds = load_ferplus(votes, fer)
    train = ds.splits["Training"]
    assert ds.labels[7] == "contempt"
    assert train.labels.tolist() == [3, 7]
    assert train.soft[0][[3, 5]] == pytest.approx([0.8, 0.2])
    assert train.soft[1][7] == pytest.approx(1.0)  # the single neutral vote was an outlier
    assert np.array_equal(train.images[1], rows[4][1])
    assert ds.splits["PublicTest"].labels.tolist() == [0]
    assert ds.splits["PrivateTest"].soft[0][[4, 2]] == pytest.approx([2 / 3, 1 / 3])
    assert any("dropped 3" in note for note in ds.notes)


def test_ferplus_bad_rows(tmp_path: Path):
    fer = write_fer_csv(tmp_path / "fer2013.csv", rows=fer_rows({"Training": 2, "PublicTest": 1, "PrivateTest": 1}))
    votes = _write_votes(tmp_path / "v.csv", [
        ("Training", "a.png", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("Training", "b.png", ["x", 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("PublicTest", "c.png", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ("Training", "d.png", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),  # FER2013 says PrivateTest
    ])
    with pytest.raises(DatasetError, match=r"v\.csv: row 1 \(line 3\): vote counts must be numbers"):
        load_ferplus(votes, fer)
    ds = load_ferplus(votes, fer, skip_bad=True)
    assert ds.skipped == 2


def _write_folders(root: Path, layout: dict[str, dict[str, int]], size: int = 48) -> Path:
    rng = np.random.default_rng(1)
    for split, classes in layout.items():
        for cls, count in classes.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                label = FER2013_LABELS.index(cls) if cls in FER2013_LABELS else 0
                image = pattern_face(label, rng, size=size)
                cv2.imwrite(str(folder / f"{i}.{'png' if i % 2 else 'jpg'}"), image)
    return root


def test_image_folders_with_synonyms(tmp_path: Path):
    root = _write_folders(tmp_path / "kaggle", {
        "train": {"anger": 2, "disgusted": 1, "fearful": 1, "happiness": 3, "sadness": 1, "surprised": 1,
                  "neutral": 2},
        "test": {"angry": 1, "happy": 2},
    })
    ds = load_image_folders(root)
    assert ds.class_counts()["Training"] == [2, 1, 1, 3, 1, 1, 2]
    assert ds.class_counts()["PrivateTest"] == [1, 0, 0, 2, 0, 0, 0]
    assert ds.splits["Training"].images.shape[1:] == (48, 48)


def test_image_folders_resize_and_errors(tmp_path: Path):
    root = _write_folders(tmp_path / "big", {"train": {"happy": 2}}, size=96)
    assert load_image_folders(root).splits["Training"].images.shape == (2, 48, 48)
    bad = root / "train" / "happy" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png: unreadable image"):
        load_image_folders(root)
    assert load_image_folders(root, skip_bad=True).skipped == 1
    (root / "train" / "bored").mkdir()
    with pytest.raises(DatasetError, match=r"bored: unknown class folder"):
        load_image_folders(root, skip_bad=True)


def test_image_folders_empty_split(tmp_path: Path):
    (tmp_path / "f" / "train" / "happy").mkdir(parents=True)
    with pytest.raises(DatasetError, match="split 'Training' has no images"):
        load_image_folders(tmp_path / "f")


def test_cew_layout(tmp_path: Path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("closed", "open"):
            folder = tmp_path / "cew" / "dataset" / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                cv2.imwrite(str(folder / f"{cls}_{i}_L.jpg"), rng.integers(0, 255, (24, 24), dtype=np.uint8))
    ds = load_cew_eyes(tmp_path / "cew", select_fraction=0.5)
    assert ds.labels == EYE_STATE_LABELS
    counts = ds.class_counts()
    assert counts["PrivateTest"] == [3, 3]  # the given val split is reported
    assert np.add(counts["Training"], counts["PublicTest"]).tolist() == [3, 3]
    assert ds.splits["PrivateTest"].images.shape == (6, 24, 24)
