"""The GPU runner: unpack the staged payload, train several queued networks at once, return their work.

Run through ``scripts/gpu/run.sh`` (which installs the carried wheels first). Each queued job is a
``FitConfig`` (any of its fields) plus a ``name``; up to ``--parallel`` unfinished jobs train side by side,
one process each, on the one GPU. Every epoch the runner packs each job's run directory
(state, history, checkpoints, log) into ``$OUT/<name>.tar`` and rewrites ``$OUT/summary.json``, so a command
cut at its limit still returns every finished epoch. Each job stops by itself before ``--budget-s`` runs
out; the next call (``--resume``-style, from the run directories kept on the warm machine or re-staged
from the returned tars) continues it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from payload import assemble, load_dataset_bytes  # noqa: E402

from train.rundir import RunState  # noqa: E402

log = logging.getLogger("gpu-runner")
RUNNER_KEYS = {"name", "data"}  # runner fields; every other key is a FitConfig field
MAX_RETURNED_FILES = 8  # the device tool returns at most 8 files from $OUT
MAX_FILE_BYTES = 15 * 2**20  # under its 16 MiB per file
RUN_FILES = ("state.json", "history.csv", "worker.log", "best.keras", "last.keras")
MODEL_SUFFIXES = (".keras", ".card.json", ".metrics.json", ".history.json", ".soft.npz", ".png")


def unpack(stage: Path, work: Path) -> str:
    """Unpack a complete staged payload into ``work`` (once per payload); returns a status line."""
    files, status = assemble(stage)
    if files is None:
        return status
    marker = work / "payload.sha256"
    sha = json.loads(next(stage.glob("part-*/manifest.json")).read_text())["sha256"]
    if marker.is_file() and marker.read_text() == sha:
        return status + " (already unpacked)"
    def epoch(state: bytes | None) -> int:
        return json.loads(state).get("epoch", 0) if state else -1

    runs = {Path(name).parts[1] for name in files if name.startswith("runs/")}
    local = {run: work / "runs" / run / "state.json" for run in runs}
    keep_local = {run for run in runs if local[run].is_file() and  # the warm machine's run is as far or further
                  epoch(local[run].read_bytes()) >= epoch(files.get(f"runs/{run}/state.json"))}
    for name, content in files.items():
        if name.startswith("runs/") and Path(name).parts[1] in keep_local:
            continue
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    marker.write_text(sha)
    return status + " (unpacked)"


def pick_jobs(queue: list[dict], runs: Path, parallel: int) -> list[dict]:
    """The first ``parallel`` queued jobs that are not finished, in queue order."""
    chosen = []
    for job in queue:
        state = RunState(runs / job["name"]).data
        if state.get("finished") or state.get("epoch", 0) >= state.get("config", {}).get("epochs", 1 << 30):
            continue
        chosen.append(job)
        if len(chosen) == parallel:
            break
    return chosen


def pack(run_dir: Path, out: Path) -> int:
    """``$OUT/<name>.tar`` from the run directory, dropping checkpoints that would exceed a returned file."""
    members = [run_dir / n for n in RUN_FILES if (run_dir / n).is_file()]
    members += sorted(p for p in (run_dir / "model").glob("*") if p.name.endswith(MODEL_SUFFIXES))
    # Over the limit, drop first what can be rebuilt (the inference export of best.keras), keep last.keras
    # (resume) longest: an edgefer run's two checkpoints with SGD momentum (~7 MB each) fit; a larger
    # network's come back as its exported model, card and soft targets only.
    droppable = [*sorted((run_dir / "model").glob("*.keras")), run_dir / "best.keras", run_dir / "last.keras"]
    for path in droppable:
        if sum(p.stat().st_size for p in members) <= MAX_FILE_BYTES:
            break
        if path in members:
            members.remove(path)
    tmp = out / f"{run_dir.name}.tar.tmp"
    with tarfile.open(tmp, "w") as tar:
        for path in members:
            tar.add(path, arcname=f"{run_dir.name}/{path.relative_to(run_dir)}")
    os.replace(tmp, out / f"{run_dir.name}.tar")
    return len(members)


def job_summary(run_dir: Path) -> dict:
    state = RunState(run_dir).data
    seconds = state.get("epoch_seconds", [])
    return {"epoch": state.get("epoch", 0), "epochs": state.get("config", {}).get("epochs"),
            "best_val_accuracy": state.get("best_val_accuracy"), "best_epoch": state.get("best_epoch"),
            "epoch_seconds_median": sorted(seconds)[len(seconds) // 2] if seconds else None,
            "device": state.get("device"), "finished": bool(state.get("finished"))}


def run_worker(job: dict, run_dir: Path, data_path: Path, time_limit_s: float) -> int:
    """One job in this process: train (resuming if a checkpoint exists), then export and card on PublicTest."""
    import numpy as np

    from train.fit import FitConfig, card_for_run, export_model, train
    from train.report import evaluate_and_report, predict_probs

    dataset = load_dataset_bytes(data_path.read_bytes())
    fields = {k: v for k, v in job.items() if k not in RUNNER_KEYS}
    cfg = FitConfig.from_dict({"name": job["name"], "dataset": dataset.name, **fields})
    resume = (run_dir / "last.keras").is_file()
    train(cfg, dataset, run_dir, resume=resume, time_limit_s=time_limit_s, verbose=2)
    model_dir = run_dir / "model"
    model = export_model(run_dir, model_dir / f"{cfg.name}.keras")
    card = card_for_run(run_dir, model, dataset)
    evaluate_and_report(model, card, dataset, model_dir / f"{cfg.name}.keras", splits=("PublicTest",),
                        history_csv=run_dir / "history.csv")
    # Flip-averaged probabilities: a teacher's soft targets, so later runs can distil without its weights.
    soft = {}
    for split in ("Training", "PublicTest"):
        images = dataset.split(split).images
        soft[split] = ((predict_probs(model, images) + predict_probs(model, images[:, :, ::-1])) / 2).astype(
            np.float16)
    np.savez_compressed(model_dir / f"{cfg.name}.soft.npz", **soft)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queue", type=Path, default=ROOT / "scripts/gpu/queue.json")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / ".out")))
    p.add_argument("--stage", type=Path, default=ROOT / ".stage")
    p.add_argument("--work", type=Path, default=ROOT / ".gpu", help="unpacked data and run dirs (ignored; kept "
                   "by the warm machine between calls)")
    p.add_argument("--budget-s", type=float, default=510.0, help="seconds this call may train (from its start)")
    p.add_argument("--parallel", type=int, default=MAX_RETURNED_FILES - 2,
                   help="jobs trained at once (one tar each comes back, beside the log and summary)")
    p.add_argument("--worker", type=json.loads, default=None, help=argparse.SUPPRESS)
    p.add_argument("--time-limit", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.worker is not None:
        job = args.worker
        return run_worker(job, args.work / "runs" / job["name"], args.work / "data" / f"{job['data']}.npz.xz",
                          args.time_limit)

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    status = unpack(args.stage, args.work)
    log.info("%s", status)
    summary: dict = {"status": status, "jobs": {}}
    data_files = sorted((args.work / "data").glob("*.npz.xz")) if (args.work / "data").is_dir() else []
    if not data_files:
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(f"runner: no data unpacked yet: {status}")
        return 0
    queue = json.loads(args.queue.read_text())["jobs"]
    parallel = max(1, min(args.parallel, MAX_RETURNED_FILES - 2))
    jobs = pick_jobs(queue, args.work / "runs", parallel)
    if not jobs:
        print("runner: every queued job is finished")
        return 0
    default_data = data_files[0].name.removesuffix(".npz.xz")
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    # Each job stops itself in time for its export, card and final pack inside the call's budget.
    time_limit = max(30.0, args.budget_s - (time.monotonic() - started) - 75.0)
    for job in jobs:
        job = {"data": default_data, **job}
        run_dir = args.work / "runs" / job["name"]
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "--work", str(args.work), "--worker", json.dumps(job),
               "--time-limit", str(time_limit)]
        logfile = open(run_dir / "worker.log", "a")  # noqa: SIM115 (lives as long as the process)
        procs[job["name"]] = (subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT), run_dir)
        log.info("started %s (time limit %.0f s)", job["name"], time_limit)
    seen: dict[str, float] = {}
    while True:
        running = {name for name, (proc, _) in procs.items() if proc.poll() is None}
        for name, (proc, run_dir) in procs.items():
            stamp = max((f.stat().st_mtime for f in run_dir.rglob("*") if f.is_file()), default=0.0)
            if stamp > seen.get(name, -1.0):
                seen[name] = stamp
                pack(run_dir, args.out)
            summary["jobs"][name] = {**job_summary(run_dir), "returncode": proc.poll()}
        summary["elapsed_s"] = round(time.monotonic() - started, 1)
        summary["parallel"] = len(procs)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        if not running:
            break
        if time.monotonic() - started > args.budget_s + 30:
            for name in running:
                log.warning("%s overran the budget; stopping it", name)
                procs[name][0].terminate()
        time.sleep(5)
    print(f"{'job':24s} {'epoch':>9s} {'best val':>9s} {'s/epoch':>8s} rc")
    for name, info in summary["jobs"].items():
        acc = f"{info['best_val_accuracy']:.4f}" if info["best_val_accuracy"] is not None else "-"
        print(f"{name:24s} {info['epoch']:>4}/{info['epochs'] or '?':<4} {acc:>9s} "
              f"{info['epoch_seconds_median'] or '-':>8} {info['returncode']}")
    return 0 if all(info["returncode"] == 0 for info in summary["jobs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
