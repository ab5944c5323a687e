"""The staged payload for the GPU runner: a data set as one compact file, and a tar split into parts.

The device tool carries at most 64 MiB of working tree per call, and FER2013's Training + PublicTest
faces are ~52 MB even compressed losslessly, so the payload (data, plus any run directories to resume)
goes up in parts, one per call, into an ignored folder that the warm machine keeps between calls.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
PART = "payload.part"
# Row-difference (delta = one image row) before LZMA2: ~0.70 of the raw bytes on FER2013 faces, vs ~0.77 without.
XZ_FILTERS = [{"id": lzma.FILTER_DELTA, "dist": 48}, {"id": lzma.FILTER_LZMA2, "preset": 9}]


def dataset_bytes(dataset, splits: list[str]) -> bytes:
    """``dataset``'s chosen splits as an xz-compressed .npz (uint8 images, labels, soft labels if any)."""
    arrays: dict[str, np.ndarray] = {}
    for name in splits:
        split = dataset.split(name)
        arrays[f"{name}_images"] = split.images
        arrays[f"{name}_labels"] = split.labels.astype(np.int16)
        if split.soft is not None:
            arrays[f"{name}_soft"] = split.soft.astype(np.float32)
    meta = {"name": dataset.name, "labels": list(dataset.labels), "source": Path(dataset.source).name,
            "splits": splits}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    filters = XZ_FILTERS if dataset.split(splits[0]).images.shape[1] == 48 else None
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, filters=filters)


def load_dataset_bytes(blob: bytes):
    from train.datasets import Dataset, SplitData

    arrays = np.load(io.BytesIO(lzma.decompress(blob)))
    meta = json.loads(arrays["meta"].tobytes())
    splits = {}
    for name in meta["splits"]:
        soft = arrays[f"{name}_soft"] if f"{name}_soft" in arrays.files else None
        splits[name] = SplitData(arrays[f"{name}_images"], arrays[f"{name}_labels"].astype(np.int64), soft)
    return Dataset(meta["name"], tuple(meta["labels"]), splits, meta["source"])


def write_parts(files: dict[str, bytes], out: Path, part_bytes: int) -> list[Path]:
    """Tar ``files`` (archive name -> content), split into folders ``out/part-KK`` of at most ``part_bytes``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    blob = buf.getvalue()
    count = max(1, -(-len(blob) // part_bytes))
    size = -(-len(blob) // count)  # equal parts
    manifest = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob), "parts": count,
                "files": sorted(files)}
    folders = []
    for k in range(count):
        folder = out / f"part-{k + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PART).write_bytes(blob[k * size : (k + 1) * size])
        (folder / MANIFEST).write_text(json.dumps({**manifest, "part": k + 1}, indent=1) + "\n")
        folders.append(folder)
    return folders


def assemble(stage: Path) -> tuple[dict[str, bytes] | None, str]:
    """The payload's files when every part is present and the hash matches; else None and what is missing."""
    manifests = [json.loads(p.read_text()) for p in sorted(stage.glob(f"part-*/{MANIFEST}"))]
    if not manifests:
        return None, f"{stage}: no staged parts"
    want = manifests[0]
    have = {m["part"] for m in manifests if m["sha256"] == want["sha256"]}
    missing = sorted(set(range(1, want["parts"] + 1)) - have)
    if missing:
        return None, f"{stage}: staged {len(have)}/{want['parts']} parts of payload {want['sha256'][:12]}; " \
                     f"missing part(s) {', '.join(f'part-{k:02d}' for k in missing)}"
    blob = b"".join((stage / f"part-{k:02d}" / PART).read_bytes() for k in range(1, want["parts"] + 1))
    if hashlib.sha256(blob).hexdigest() != want["sha256"]:
        return None, f"{stage}: parts assembled to a payload whose sha256 differs from the manifest's"
    files = {}
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            files[member.name] = tar.extractfile(member).read()
    return files, f"{stage}: payload {want['sha256'][:12]} complete ({want['parts']} part(s), {len(blob)} bytes)"
