"""The GPU runner's staging and packing (scripts/gpu): parts that reassemble only when complete and intact,
a data set that round-trips, a resumed run that is not overwritten by an older copy, tars that keep
last.keras longest."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "gpu"))

import payload
import runner


def test_parts_reassemble_only_when_complete_and_intact(tmp_path: Path):
    files = {"data/x.bin": np.random.default_rng(0).bytes(50_000), "runs/a/state.json": b'{"epoch": 3}'}
    folders = payload.write_parts(files, tmp_path / "stage", part_bytes=25_000)  # the tar is 60 KiB
    assert [f.name for f in folders] == ["part-01", "part-02", "part-03"]
    assert all((f / payload.PART).stat().st_size <= 25_000 for f in folders)

    moved = tmp_path / "elsewhere"
    (folders[1]).rename(moved)
    got, status = payload.assemble(tmp_path / "stage")
    assert got is None and "staged 2/3 parts" in status and "part-02" in status
    moved.rename(folders[1])
    got, status = payload.assemble(tmp_path / "stage")
    assert got == files and "complete (3 part(s)" in status

    blob = bytearray((folders[2] / payload.PART).read_bytes())
    blob[10] ^= 0xFF
    (folders[2] / payload.PART).write_bytes(bytes(blob))
    got, status = payload.assemble(tmp_path / "stage")
    assert got is None and "sha256 differs" in status


def test_dataset_round_trips_through_the_staged_format():
    from edge.contract import FERPLUS_LABELS
    from train.datasets import Dataset, SplitData

    rng = np.random.default_rng(1)
    soft = rng.dirichlet(np.ones(8), 20).astype(np.float32)
    original = Dataset("ferplus", FERPLUS_LABELS, {
        "Training": SplitData(rng.integers(0, 256, (20, 48, 48), dtype=np.uint8), rng.integers(0, 8, 20), soft),
        "PublicTest": SplitData(rng.integers(0, 256, (6, 48, 48), dtype=np.uint8), rng.integers(0, 8, 6)),
    }, "/data/ferplus/fer2013new.csv")
    back = payload.load_dataset_bytes(payload.dataset_bytes(original, ["Training", "PublicTest"]))
    assert (back.name, back.labels, back.source) == ("ferplus", FERPLUS_LABELS, "fer2013new.csv")
    for name in ("Training", "PublicTest"):
        np.testing.assert_array_equal(back.split(name).images, original.split(name).images)
        np.testing.assert_array_equal(back.split(name).labels, original.split(name).labels)
    np.testing.assert_array_equal(back.split("Training").soft, soft)
    assert back.split("PublicTest").soft is None and "PrivateTest" not in back.splits


def test_unpack_keeps_a_warm_run_that_is_further_along(tmp_path: Path):
    def state(epoch: int) -> bytes:
        return json.dumps({"epoch": epoch, "config": {"epochs": 10}}).encode()

    files = {"data/fer2013.npz.xz": b"x", "runs/a/state.json": state(4), "runs/a/last.keras": b"staged-a",
             "runs/b/state.json": state(4), "runs/b/last.keras": b"staged-b"}
    payload.write_parts(files, tmp_path / "stage", part_bytes=1 << 20)
    work = tmp_path / "work"
    (work / "runs" / "a").mkdir(parents=True)
    (work / "runs" / "a" / "state.json").write_bytes(state(6))  # trained further on the warm machine
    (work / "runs" / "a" / "last.keras").write_bytes(b"warm-a")
    (work / "runs" / "b").mkdir(parents=True)
    (work / "runs" / "b" / "state.json").write_bytes(state(2))  # behind the staged copy
    assert "(unpacked)" in runner.unpack(tmp_path / "stage", work)
    assert (work / "runs" / "a" / "last.keras").read_bytes() == b"warm-a"
    assert json.loads((work / "runs" / "a" / "state.json").read_text())["epoch"] == 6
    assert (work / "runs" / "b" / "last.keras").read_bytes() == b"staged-b"
    assert json.loads((work / "runs" / "b" / "state.json").read_text())["epoch"] == 4
    assert "already unpacked" in runner.unpack(tmp_path / "stage", work)


def test_pack_drops_rebuildable_checkpoints_before_last_keras(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    run_dir = tmp_path / "runs" / "job"
    (run_dir / "model").mkdir(parents=True)
    for name, size in (("state.json", 10), ("history.csv", 10), ("best.keras", 600), ("last.keras", 600),
                       ("model/job.keras", 300), ("model/job.card.json", 10), ("model/job.soft.npz", 50)):
        (run_dir / name).write_bytes(b"0" * size)
    out = tmp_path / "out"
    out.mkdir()

    def packed(limit: int) -> set[str]:
        monkeypatch.setattr(runner, "MAX_FILE_BYTES", limit)
        runner.pack(run_dir, out)
        with tarfile.open(out / "job.tar") as tar:
            return {m.name.removeprefix("job/") for m in tar.getmembers()}

    small = {"state.json", "history.csv", "model/job.card.json", "model/job.soft.npz"}
    assert packed(2000) == small | {"best.keras", "last.keras", "model/job.keras"}
    assert packed(1400) == small | {"best.keras", "last.keras"}
    assert packed(1000) == small | {"last.keras"}
    assert packed(500) == small
    assert sorted(p.name for p in out.iterdir()) == ["job.tar"]  # no temporary file left to come back
