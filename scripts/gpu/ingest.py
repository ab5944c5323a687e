"""Unpack what the GPU runner returned (``<job>.tar`` files from ``$OUT``) into ``runs/gpu/<job>/``.

    python scripts/gpu/ingest.py /work/.device/<call>/files     # then: stage_data.py --resume-runs runs/gpu

A returned run replaces the local copy only when it is as far or further (its ``state.json`` epoch).
Publish a job here, with PrivateTest, under TensorFlow: ``fer-train export --run-dir runs/gpu/<job> --out ...``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ingest(tar_path: Path, runs: Path) -> str:
    with tarfile.open(tar_path) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        names = {Path(m.name).parts[0] for m in members}
        if len(names) != 1 or any(".." in Path(m.name).parts or Path(m.name).is_absolute() for m in members):
            raise ValueError(f"{tar_path}: not a runner tar (one job folder, relative paths)")
        job = names.pop()
        state_member = next((m for m in members if m.name == f"{job}/state.json"), None)
        returned = json.load(io.BytesIO(tar.extractfile(state_member).read())).get("epoch", 0) if state_member else 0
        local_state = runs / job / "state.json"
        local = json.loads(local_state.read_text()).get("epoch", 0) if local_state.is_file() else -1
        if returned < local:
            return f"{job}: kept the local run (epoch {local} > returned {returned})"
        (runs / job).mkdir(parents=True, exist_ok=True)
        for m in members:
            target = runs / m.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return f"{job}: epoch {returned} -> {runs / job}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", type=Path, help="folder holding the returned files (or one .tar)")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "gpu")
    args = p.parse_args(argv)
    tars = [args.files] if args.files.suffix == ".tar" else sorted(args.files.glob("*.tar"))
    if not tars:
        print(f"ingest: {args.files}: no .tar files", file=sys.stderr)
        return 2
    for tar_path in tars:
        try:
            print(ingest(tar_path, args.runs))
        except (tarfile.TarError, ValueError, OSError) as exc:
            print(f"ingest: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
