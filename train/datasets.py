"""Dataset loaders: Kaggle FER2013 CSV, Microsoft FER+ votes, and image folders.

Every loader returns a :class:`Dataset` of uint8 images (N, H, W) per split with integer labels
(and soft label distributions for FER+). Bad input stops with a :class:`DatasetError` naming the
file and row or path, unless ``skip_bad`` is set, in which case the row is skipped and counted.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.contract import (
    EYE_INPUT_SIZE,
    EYE_STATE_LABELS,
    FACE_INPUT_SIZE,
    FER2013_LABELS,
    FERPLUS_LABELS,
    canonical_label,
)

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
EYE_DATASETS: tuple[str, ...] = ("cew", "cew-faces")  # data sets of eye patches (open/closed)
# Folder names seen in image-folder copies of FER2013 and in CEW, mapped to our split names.
SPLIT_SYNONYMS: dict[str, str] = {
    "train": "Training",
    "training": "Training",
    "val": "PublicTest",
    "valid": "PublicTest",
    "validation": "PublicTest",
    "publictest": "PublicTest",
    "test": "PrivateTest",
    "privatetest": "PrivateTest",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}
FERPLUS_VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
# FER+ column -> index in FERPLUS_LABELS (which keeps FER2013's order and appends contempt).
_FERPLUS_TO_INDEX = {
    "neutral": 6,
    "happiness": 3,
    "surprise": 5,
    "sadness": 4,
    "anger": 0,
    "disgust": 1,
    "fear": 2,
    "contempt": 7,
}


class DatasetError(ValueError):
    """Input data that cannot be used, with the file and row or path in the message."""


@dataclass
class SplitData:
    images: np.ndarray  # uint8 (N, H, W)
    labels: np.ndarray  # int64 (N,)
    soft: np.ndarray | None = None  # float32 (N, C) label distributions, when the source has them
    rows: np.ndarray | None = None  # source row numbers (CSV data rows, 0-based) for traceability

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    name: str
    labels: tuple[str, ...]
    splits: dict[str, SplitData]
    source: str
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> SplitData:
        data = self.splits.get(name)
        if data is None or len(data) == 0:
            raise DatasetError(f"{self.source}: split '{name}' is empty (have: {self.counts_text()})")
        return data

    def class_counts(self) -> dict[str, list[int]]:
        n = len(self.labels)
        return {s: np.bincount(d.labels, minlength=n).tolist() for s, d in self.splits.items()}

    def counts_text(self) -> str:
        return ", ".join(f"{s}={len(d)}" for s, d in self.splits.items()) or "no rows"


def _split(images: list[np.ndarray], labels: list[int], size: int, rows: list[int] | None = None) -> SplitData:
    return SplitData(
        images=np.stack(images) if images else np.zeros((0, size, size), np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        rows=None if rows is None else np.asarray(rows, dtype=np.int64),
    )


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _cache_file(path: Path, kind: str, cache_dir: Path | None, extra: str = "") -> Path | None:
    """Where the decoded arrays of ``path`` are cached; ``extra`` is anything else the arrays depend on."""
    if cache_dir is None:
        return None
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{kind}|v2" + (f"|{extra}" if extra else "")
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return cache_dir / f"{path.name}.{kind}.{key}.npz"


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "fer-edge"


def _parse_pixels(text: str, size: int, where: str) -> np.ndarray:
    parts = text.split()
    if len(parts) != size * size:
        raise DatasetError(f"{where}: expected {size * size} pixel values, found {len(parts)}")
    try:
        values = np.array(parts, dtype=np.int32)
    except ValueError:
        bad = next(p for p in parts if not p.lstrip("-").isdigit())
        raise DatasetError(f"{where}: non-numeric pixel value {bad!r}") from None
    if values.min() < 0 or values.max() > 255:
        raise DatasetError(f"{where}: pixel values must lie in 0-255 (found {values.min()}..{values.max()})")
    return values.astype(np.uint8).reshape(size, size)


def _iter_fer2013_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        need = {"emotion", "pixels", "Usage"}
        if reader.fieldnames is None or not need.issubset(reader.fieldnames):
            raise DatasetError(f"{path}: header must contain {sorted(need)}, found {reader.fieldnames}")
        yield from enumerate(reader)


def load_fer2013_csv(
    path: str | Path,
    *,
    skip_bad: bool = False,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> Dataset:
    """Stream the Kaggle ``fer2013.csv`` (or ``.csv.gz``): columns ``emotion,pixels,Usage``.

    Row numbers in errors count data rows from 0 and give the file line (header is line 1).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: FER2013 CSV not found")
    cached = _cache_file(path, "fer2013", cache_dir)
    if cached is not None and cached.is_file() and not skip_bad:
        return _load_cached(cached, "fer2013", FER2013_LABELS, str(path))

    per_split: dict[str, tuple[list[np.ndarray], list[int], list[int]]] = {s: ([], [], []) for s in SPLITS}
    skipped = 0
    rows = _iter_fer2013_rows(path)
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc=f"reading {path.name}", unit="row", total=None)
    for index, row in rows:
        where = f"{path}: row {index} (line {index + 2})"
        try:
            label_text = (row.get("emotion") or "").strip()
            if not label_text.isdigit() or int(label_text) >= len(FER2013_LABELS):
                raise DatasetError(f"{where}: unknown emotion label {label_text!r} (expected 0-6)")
            usage = (row.get("Usage") or "").strip()
            if usage not in per_split:
                raise DatasetError(f"{where}: unknown Usage {usage!r} (expected one of {', '.join(SPLITS)})")
            image = _parse_pixels(row.get("pixels") or "", FACE_INPUT_SIZE, where)
        except DatasetError as exc:
            if not skip_bad:
                raise
            skipped += 1
            log.warning("skipping bad row: %s", exc)
            continue
        images, labels, row_ids = per_split[usage]
        images.append(image)
        labels.append(int(label_text))
        row_ids.append(index)

    splits = {s: _split(v[0], v[1], FACE_INPUT_SIZE, v[2]) for s, v in per_split.items()}
    dataset = Dataset("fer2013", FER2013_LABELS, splits, str(path), skipped=skipped)
    if skipped:
        dataset.notes.append(f"skipped {skipped} bad row(s)")
    if sum(len(d) for d in splits.values()) == 0:
        raise DatasetError(f"{path}: no usable rows")
    if cached is not None and not skipped:
        _save_cached(cached, dataset)
    return dataset


def load_ferplus(
    votes_path: str | Path,
    fer2013_path: str | Path,
    *,
    skip_bad: bool = False,
    cache_dir: Path | None = None,
    min_vote: int = 2,
) -> Dataset:
    """FER+ relabels: pixels from FER2013, labels from the crowd votes in ``fer2013new.csv``.

    Follows Microsoft's FERPlus reference processing: votes below ``min_vote`` are treated as
    outliers and removed; the majority label needs more than half of the remaining votes; rows
    whose majority is ``unknown`` or ``NF`` (not a face), with no majority, or with an empty image
    name are dropped. ``soft`` holds the vote distribution over the 8 emotions (outliers removed).
    """
    votes_path, fer2013_path = Path(votes_path), Path(fer2013_path)
    if not votes_path.is_file():
        raise DatasetError(f"{votes_path}: FER+ vote file not found")
    base = load_fer2013_csv(fer2013_path, skip_bad=skip_bad, cache_dir=cache_dir)
    by_row: dict[int, tuple[str, int]] = {}
    for split_name, data in base.splits.items():
        for pos, row in enumerate(data.rows if data.rows is not None else []):
            by_row[int(row)] = (split_name, pos)

    per_split: dict[str, tuple[list[int], list[int], list[np.ndarray]]] = {s: ([], [], []) for s in SPLITS}
    skipped = dropped = 0
    with _open_text(votes_path) as fh:
        reader = csv.DictReader(fh)
        need = {"Usage", "Image name", *FERPLUS_VOTE_COLUMNS, "unknown", "NF"}
        if reader.fieldnames is None or not need.issubset(reader.fieldnames):
            raise DatasetError(f"{votes_path}: header must contain {sorted(need)}, found {reader.fieldnames}")
        for index, row in enumerate(reader):
            where = f"{votes_path}: row {index} (line {index + 2})"
            try:
                usage = (row["Usage"] or "").strip()
                if usage not in per_split:
                    raise DatasetError(f"{where}: unknown Usage {usage!r}")
                try:
                    votes = np.array([float(row[c]) for c in (*FERPLUS_VOTE_COLUMNS, "unknown", "NF")])
                except (TypeError, ValueError):
                    raise DatasetError(f"{where}: vote counts must be numbers") from None
                if index not in by_row:
                    raise DatasetError(f"{where}: no matching FER2013 row {index} in {fer2013_path}")
                if by_row[index][0] != usage:
                    raise DatasetError(f"{where}: Usage {usage!r} differs from FER2013's {by_row[index][0]!r}")
            except DatasetError as exc:
                if not skip_bad:
                    raise
                skipped += 1
                log.warning("skipping bad row: %s", exc)
                continue
            if not (row["Image name"] or "").strip():
                dropped += 1
                continue
            votes = np.where(votes < min_vote, 0.0, votes)
            total = votes.sum()
            top = int(np.argmax(votes))
            if total <= 0 or votes[top] <= 0.5 * total or top >= len(FERPLUS_VOTE_COLUMNS):
                dropped += 1
                continue
            soft = np.zeros(len(FERPLUS_LABELS), np.float32)
            for col, count in zip(FERPLUS_VOTE_COLUMNS, votes[: len(FERPLUS_VOTE_COLUMNS)], strict=True):
                soft[_FERPLUS_TO_INDEX[col]] = count
            soft /= soft.sum()
            split_name, pos = by_row[index]
            per_split[usage][0].append(pos)
            per_split[usage][1].append(_FERPLUS_TO_INDEX[FERPLUS_VOTE_COLUMNS[top]])
            per_split[usage][2].append(soft)

    splits = {}
    for s, (positions, labels, softs) in per_split.items():
        src = base.splits[s]
        idx = np.asarray(positions, dtype=np.int64)
        splits[s] = SplitData(
            images=src.images[idx],
            labels=np.asarray(labels, dtype=np.int64),
            soft=np.stack(softs).astype(np.float32) if softs else np.zeros((0, len(FERPLUS_LABELS)), np.float32),
            rows=src.rows[idx] if src.rows is not None else None,
        )
    dataset = Dataset("ferplus", FERPLUS_LABELS, splits, str(votes_path), skipped=skipped + base.skipped)
    dataset.notes.append(f"dropped {dropped} row(s): not a face, unknown, or no majority")
    return dataset


def _read_grey(path: Path, size: int) -> np.ndarray:
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: unreadable image")
    if image.shape != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image


def load_image_folders(
    root: str | Path,
    *,
    labels: tuple[str, ...] = FER2013_LABELS,
    size: int = FACE_INPUT_SIZE,
    skip_bad: bool = False,
    name: str = "folders",
) -> Dataset:
    """Kaggle-style ``<root>/<split>/<class>/*.jpg|png``; split and class names accept synonyms."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: image folder not found")
    index = {label: i for i, label in enumerate(labels)}
    per_split: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    skipped = 0
    split_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not split_dirs:
        raise DatasetError(f"{root}: no split folders (expected e.g. train/ and test/)")
    for split_dir in split_dirs:
        split = SPLIT_SYNONYMS.get(split_dir.name.lower())
        if split is None:
            raise DatasetError(f"{split_dir}: unknown split folder (expected one of {sorted(SPLIT_SYNONYMS)})")
        images, ys = per_split.setdefault(split, ([], []))
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            label = canonical_label(class_dir.name)
            if label not in index:
                raise DatasetError(f"{class_dir}: unknown class folder (expected one of {', '.join(labels)})")
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    images.append(_read_grey(file, size))
                except DatasetError as exc:
                    if not skip_bad:
                        raise
                    skipped += 1
                    log.warning("skipping bad image: %s", exc)
                    continue
                ys.append(index[label])
    splits = {s: _split(v[0], v[1], size) for s, v in per_split.items()}
    for s, data in splits.items():
        if len(data) == 0:
            raise DatasetError(f"{root}: split '{s}' has no images")
    dataset = Dataset(name, labels, splits, str(root), skipped=skipped)
    if skipped:
        dataset.notes.append(f"skipped {skipped} unreadable image(s)")
    return dataset


def load_cew_eyes(root: str | Path, *, skip_bad: bool = False, select_fraction: float = 0.15) -> Dataset:
    """CEW eye patches (``dataset/{train,val}/{closed,open}``).

    The given val split becomes the report split (PrivateTest). A ``select_fraction`` of train is held
    out as the selection split (PublicTest), grouped by source photo so that the left and right eye of
    one face never straddle the two; the rest is Training.
    """
    root = Path(root)
    if (root / "dataset").is_dir():
        root = root / "dataset"
    ds = load_image_folders(root, labels=EYE_STATE_LABELS, size=EYE_INPUT_SIZE, skip_bad=skip_bad, name="cew")
    names = _cew_names(root)
    report = ds.splits.pop("PublicTest")
    train = ds.splits.pop("Training")
    groups = np.array([hashlib.sha256(n.encode()).digest()[0] / 255.0 for n in names]) if len(names) == len(train) \
        else np.random.default_rng(0).random(len(train))
    select = groups < select_fraction
    ds.splits = {
        "Training": SplitData(train.images[~select], train.labels[~select]),
        "PublicTest": SplitData(train.images[select], train.labels[select]),
        "PrivateTest": report,
    }
    ds.notes.append(f"held out {int(select.sum())} training patches (grouped by photo) for selection; "
                    "the given val split is reported as PrivateTest")
    return ds


EYES_IN_FACES_TRAINING_FACES = 14000  # FER2013 Training faces tried (about 42% give a pair): ~29.5k patches


COMPOSITES_NOTE = ("each split adds eye patches cut from the same split's FER2013 faces (own eyes open, CEW "
                   "patches pasted closed and open)")


def _eyes_in_faces_key(cew: Dataset) -> str:
    """What the composites depend on besides the FER2013 file: the CEW patches of every split, the code that
    cuts and pastes them (and the daemon's eye geometry it imports) and OpenCV, whose cascade finds the eyes."""
    import inspect

    import cv2

    from edge.vision import eyes
    from train import eye_composites

    digest = hashlib.sha256()
    for name in sorted(cew.splits):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(cew.splits[name].images).tobytes())
        digest.update(np.ascontiguousarray(cew.splits[name].labels).tobytes())
    digest.update(inspect.getsource(eye_composites).encode())
    digest.update(inspect.getsource(eyes.plausible_pair).encode())
    digest.update(f"{eyes.EYE_SIDE}|{cv2.__version__}".encode())
    return digest.hexdigest()[:16]


def load_eyes_in_faces(cew_root: str | Path, fer_csv: str | Path, *, skip_bad: bool = False,
                       cache_dir: Path | None = None, progress: bool = False,
                       training_faces: int = EYES_IN_FACES_TRAINING_FACES) -> Dataset:
    """CEW (as :func:`load_cew_eyes`) plus eye patches cut from FER2013 faces the way the daemon cuts them
    (:mod:`train.eye_composites`): each split gains the composites of the same-role FER2013 split, made with
    that split's CEW patches. CEW's own train/val split shares photos (the other eye) and people, and FER2013
    has a few hundred duplicate faces across its splits; neither is removed here."""
    from train.eye_composites import composite_eye_patches

    cew = load_cew_eyes(cew_root, skip_bad=skip_bad)
    fer_csv = Path(fer_csv)
    cached = _cache_file(fer_csv, f"eyes_in_faces_{training_faces}_{len(cew.split('Training'))}", cache_dir,
                         extra=_eyes_in_faces_key(cew))
    if cached is not None and cached.is_file():
        ds = _load_cached(cached, "cew-faces", EYE_STATE_LABELS, str(cew_root))
        ds.notes = [*cew.notes, COMPOSITES_NOTE]
        return ds
    fer = load_fer2013_csv(fer_csv, skip_bad=skip_bad, cache_dir=cache_dir, progress=progress)
    closed, open_ = EYE_STATE_LABELS.index("closed"), EYE_STATE_LABELS.index("open")
    splits = {}
    for number, name in enumerate(SPLITS):
        eyes, faces = cew.splits.get(name), fer.splits.get(name)
        if eyes is None or faces is None or min(np.bincount(eyes.labels, minlength=2)) < 2 or not len(faces):
            if eyes is not None:
                splits[name] = eyes
            ds_note = f"{name}: no composites (fewer than two CEW patches of a class, or no FER2013 faces)"
            cew.notes.append(ds_note)
            continue
        faces = faces.images
        if name == "Training":
            faces = faces[np.random.default_rng(0).permutation(len(faces))[:training_faces]]
        bar = None
        if progress:
            from functools import partial

            from tqdm import tqdm

            bar = partial(tqdm, desc=f"eyes in {name} faces", unit="face", total=len(faces))
        images, labels, _ = composite_eye_patches(faces, eyes.images[eyes.labels == open_],
                                                  eyes.images[eyes.labels == closed],
                                                  np.random.default_rng([7, number]), progress=bar)
        splits[name] = SplitData(np.concatenate([eyes.images, images]), np.concatenate([eyes.labels, labels]))
    ds = Dataset("cew-faces", EYE_STATE_LABELS, splits, str(cew_root), notes=list(cew.notes))
    ds.notes.append(COMPOSITES_NOTE)
    if cached is not None:
        _save_cached(cached, ds)
    return ds


def _cew_names(root: Path) -> list[str]:
    """Photo identity per training patch, in loader order: the file name without the _L/_R eye suffix."""
    names = []
    split_dir = next((p for p in sorted(root.iterdir()) if SPLIT_SYNONYMS.get(p.name.lower()) == "Training"), None)
    if split_dir is None:
        return names
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for file in sorted(class_dir.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                stem = file.stem
                names.append(stem[:-2] if stem.endswith(("_L", "_R")) else stem)
    return names


def _save_cached(path: Path, dataset: Dataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for s, d in dataset.splits.items():
        arrays[f"{s}_images"] = d.images
        arrays[f"{s}_labels"] = d.labels
        if d.rows is not None:
            arrays[f"{s}_rows"] = d.rows
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_cached(path: Path, name: str, labels: tuple[str, ...], source: str) -> Dataset:
    with np.load(path) as data:
        splits = {
            s: SplitData(
                images=data[f"{s}_images"],
                labels=data[f"{s}_labels"],
                rows=data.get(f"{s}_rows", None),
            )
            for s in SPLITS
            if f"{s}_images" in data
        }
    return Dataset(name, labels, splits, source)


def default_data_root() -> Path | None:
    """``../shared/data`` beside the repository (or the working directory), when present."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None


def load_dataset(
    kind: str,
    data_root: str | Path | None = None,
    *,
    skip_bad: bool = False,
    cache_dir: Path | None = None,
    path: str | Path | None = None,
    progress: bool = False,
) -> Dataset:
    """Load by kind: ``fer2013``, ``ferplus``, ``cew``, ``cew-faces`` (CEW plus eye patches cut from FER2013
    faces) or ``folders`` (then ``path`` is required)."""
    root = Path(data_root) if data_root else default_data_root()
    if kind == "folders":
        if path is None:
            raise DatasetError("dataset kind 'folders' needs a path to <split>/<class>/ image folders")
        return load_image_folders(path, skip_bad=skip_bad)
    if root is None and path is None:
        raise DatasetError("no data root given and ../shared/data not found; pass --data")
    if kind == "fer2013":
        return load_fer2013_csv(path or root / "fer2013" / "fer2013.csv.gz", skip_bad=skip_bad, cache_dir=cache_dir,
                                progress=progress)
    if kind == "ferplus":
        votes = path or root / "ferplus" / "fer2013new.csv"
        return load_ferplus(votes, root / "fer2013" / "fer2013.csv.gz", skip_bad=skip_bad, cache_dir=cache_dir)
    if kind == "cew":
        return load_cew_eyes(path or root / "eyes" / "cew", skip_bad=skip_bad)
    if kind == "cew-faces":
        return load_eyes_in_faces(path or root / "eyes" / "cew", root / "fer2013" / "fer2013.csv.gz",
                                  skip_bad=skip_bad, cache_dir=cache_dir, progress=progress)
    raise DatasetError(f"unknown dataset kind {kind!r} (expected fer2013, ferplus, cew, cew-faces or folders)")
