"""Stage the GPU runner's payload: the data set (and run directories to resume) in parts that fit a call.

    python scripts/gpu/stage_data.py                       # FER2013 Training + PublicTest from ../shared/data
    python scripts/gpu/stage_data.py --tiny                # generated faces, for a dry run on the CPU
    python scripts/gpu/stage_data.py --resume-runs runs/gpu   # also carry unfinished runs returned earlier

Writes ``.stage/part-KK/`` (ignored by git), each small enough to travel beside the working tree within
the device tool's 64 MiB per call, and prints the calls that send them (see README, "Training on a GPU").
PrivateTest is never staged: models are reported on it here, after they come back.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from payload import dataset_bytes, write_parts  # noqa: E402

CALL_LIMIT = 64 * 2**20
MARGIN = 2 * 2**20  # files added to the tree between staging and the call (logs, notes)
RUN_FILES = ("state.json", "history.csv", "last.keras", "best.keras")


def travelling_bytes(extra: list[Path]) -> int:
    """Bytes of the working tree that every call sends (tracked + untracked-not-ignored), plus ``extra``."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    total = sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())
    return total + sum(f.stat().st_size for p in extra if p.exists() for f in [p, *p.rglob("*")] if f.is_file())


def tiny_dataset(train: int, select: int, seed: int = 0):
    """Generated stripe faces whose period encodes the class (as in the tests): a learnable dry-run task."""
    from edge.contract import FER2013_LABELS
    from train.datasets import Dataset, SplitData

    rng = np.random.default_rng(seed)
    periods = (3, 4, 6, 8, 12, 16, 24)

    def split(n: int) -> SplitData:
        labels = np.arange(n) % 7
        rows = np.arange(48)[None, :, None]
        phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
        faces = 110 + 70 * np.sin(2 * np.pi * rows / np.array(periods)[labels][:, None, None] + phase)
        faces = faces + rng.normal(0, 10, (n, 48, 48))
        return SplitData(np.clip(faces, 0, 255).astype(np.uint8), labels.astype(np.int64))

    return Dataset("fer2013", FER2013_LABELS, {"Training": split(train), "PublicTest": split(select)},
                   "generated-tiny")


def resumable_runs(folder: Path) -> dict[str, bytes]:
    files = {}
    for state_path in sorted(folder.glob("*/state.json")):
        state = json.loads(state_path.read_text())
        if state.get("epoch", 0) >= state.get("config", {}).get("epochs", 0):
            continue  # finished: nothing to resume
        for name in RUN_FILES:
            if (state_path.parent / name).is_file():
                files[f"runs/{state_path.parent.name}/{name}"] = (state_path.parent / name).read_bytes()
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="data root (default: ../shared/data)")
    p.add_argument("--dataset", default="fer2013", choices=["fer2013", "ferplus"])
    p.add_argument("--splits", nargs="+", default=["Training", "PublicTest"])
    p.add_argument("--tiny", action="store_true", help="stage generated faces instead (CPU dry run)")
    p.add_argument("--resume-runs", type=Path, default=None, help="folder of run dirs returned by the runner")
    p.add_argument("--out", type=Path, default=ROOT / ".stage")
    p.add_argument("--part-mb", type=float, default=0.0,
                   help="bytes per part in MB (default: what a call has left beside the tree and .whl/)")
    args = p.parse_args(argv)

    if args.tiny:
        dataset = tiny_dataset(1024, 256)
    else:
        from train.datasets import default_cache_dir, load_dataset

        dataset = load_dataset(args.dataset, args.data, cache_dir=default_cache_dir())
    files = {f"data/{dataset.name}.npz.xz": dataset_bytes(dataset, args.splits)}
    if args.resume_runs:
        files.update(resumable_runs(args.resume_runs))
    if args.out.exists():
        shutil.rmtree(args.out)
    part_bytes = int(args.part_mb * 1e6) if args.part_mb else \
        CALL_LIMIT - MARGIN - travelling_bytes([ROOT / ".whl"])
    if part_bytes <= 0:
        print("stage_data: the tree and .whl/ already fill a call; nothing can travel beside them", file=sys.stderr)
        return 2
    parts = write_parts(files, args.out, part_bytes)
    total = sum((f / "payload.part").stat().st_size for f in parts)
    print(f"staged {len(files)} file(s), {total / 1e6:.1f} MB, in {len(parts)} part(s) of <= {part_bytes / 1e6:.1f} MB")
    for k, folder in enumerate(parts, 1):
        rel = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
        then = "stages it and reports the parts still missing" if k < len(parts) else "completes it and trains"
        print(f"call {k}: run(command='bash scripts/gpu/run.sh', carry=['.whl', '{rel}'], timeout_s=570)  "
              f"# {then}")
    if len(parts) > 1:
        print("send each next call at once: the machine keeps the parts only while warm (30 s after a call)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
