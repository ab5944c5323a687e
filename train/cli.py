"""``fer-train``: dataset statistics, training with resume, and evaluation reports."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from train.datasets import EYE_DATASETS, DatasetError, default_cache_dir, default_data_root, load_dataset

log = logging.getLogger("fer-train")

EPILOG = """examples:
  fer-train stats --data ../shared/data --out reports/
  fer-train fit --data ../shared/data --run-dir runs/fer_edge --out models/
  fer-train fit --run-dir runs/fer_edge --resume --out models/     # continue a stopped run
  fer-train fit --run-dir runs/fer_edge --resume --new-horizon --epochs 110   # end a resumed run earlier
  fer-train fit --run-dir runs/fer_edge --snapshots 10 ...           # keep the last 10 epochs' weights
  fer-train fit --init-from models/fer_edge.keras --lr 0.01 --warmup-epochs 1 --epochs 30 --run-dir runs/ft
                                                                     # warm restart from a trained model
  fer-train average --run-dir runs/fer_edge --from-epoch 101         # average them; kept if better on PublicTest
  fer-train export --run-dir runs/fer_edge --out models/             # publish the selected model
  fer-train fit --arch baseline_2block --name baseline_2block --epochs 40 --run-dir runs/b2 --out models/baselines
  KERAS_BACKEND=jax fer-train fit --run-dir runs/gpu ...           # the same training on JAX (CUDA box)
  fer-train fit --dataset cew-faces --arch eyenet --name eye_state --epochs 40 --run-dir runs/eyes --out models/
  fer-train evaluate models/fer_edge.keras --data ../shared/data
  fer-train ensemble models/teachers/*.keras --tta-flip             # what a distilled student could learn
  fer-train calibrate models/fer_edge.keras --out /tmp/cal           # fold a PublicTest temperature, reliability PNG
exit status: 0 done (calibrate: also when the model is already calibrated; nothing is written then),
2 bad input (model, card, data set, or a data set without PublicTest for calibrate).
"""


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None,
                   help="data root holding fer2013/, ferplus/, eyes/cew/ (default: ../shared/data when present)")
    p.add_argument("--dataset", default="fer2013", choices=["fer2013", "ferplus", "cew", "cew-faces", "folders"],
                   help="which data set to read (cew-faces: CEW plus eye patches cut from FER2013 faces the way the "
                   "daemon cuts them)")
    p.add_argument("--path", type=Path, default=None,
                   help="explicit file or folder for the data set (required for --dataset folders)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip malformed rows/images (reported with a count) instead of stopping")
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                   help="where decoded arrays are cached (default: %(default)s)")


def _load(args: argparse.Namespace):
    dataset = load_dataset(args.dataset, args.data, skip_bad=args.skip_bad, cache_dir=args.cache_dir, path=args.path,
                           progress=sys.stderr.isatty())
    if dataset.skipped:
        log.warning("skipped %d bad row(s) or image(s) in %s", dataset.skipped, dataset.source)
    return dataset


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where the help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-train",
        description="Train and evaluate compact facial-expression (and eye-state) CNNs for fer-edge.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stats = sub.add_parser("stats", help="class counts per split, a class-distribution chart and a sample grid (PNG)")
    _add_data_args(stats)
    stats.add_argument("--out", type=Path, default=Path("reports"), help="folder for the PNGs (default: %(default)s)")

    fit = sub.add_parser("fit", help="train a model (checkpoint every epoch; --resume continues)",
                         formatter_class=_DefaultsHelpFormatter)
    _add_data_args(fit)
    fit.add_argument("--arch", default="edgefer", help="architecture from the registry (fer-train archs)")
    fit.add_argument("--name", default=None, help="model name; files are <out>/<name>.keras and .card.json")
    fit.add_argument("--run-dir", type=Path, default=None, help="checkpoints and history (default: runs/<name>)")
    fit.add_argument("--out", type=Path, default=Path("models"), help="where the selected model, card and report go")
    fit.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last epoch")
    fit.add_argument("--epochs", type=int, default=150,
                     help="total epochs; with --resume and --new-horizon, the run's new total")
    fit.add_argument("--new-horizon", action="store_true",
                     help="with --resume: end the run at --epochs instead of its saved total (the cosine tail is "
                     "recomputed from the current step, so the learning rate drops smoothly towards zero at the "
                     "new end)")
    fit.add_argument("--batch-size", type=int, default=64)
    fit.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    fit.add_argument("--lr", type=float, default=0.05, help="peak learning rate")
    fit.add_argument("--weight-decay", type=float, default=5e-4)
    fit.add_argument("--schedule", choices=["cosine", "plateau"], default="cosine")
    fit.add_argument("--warmup-epochs", type=int, default=3)
    fit.add_argument("--label-smoothing", type=float, default=0.1)
    fit.add_argument("--soft-labels", action="store_true", help="train on FER+ vote distributions (--dataset ferplus)")
    fit.add_argument("--class-weight", choices=["none", "balanced", "sqrt"], default="none")
    fit.add_argument("--patience", type=int, default=0, help="early stop after N epochs without a PublicTest gain")
    fit.add_argument("--no-augment", action="store_true", help="turn augmentation off (debugging only)")
    fit.add_argument("--augment", type=json.loads, default={}, metavar="JSON",
                     help='augmentation settings over the dataset\'s defaults, e.g. \'{"blur": 1, "noise_std": 6}\' '
                     "(fields of train.augment.AugmentConfig)")
    fit.add_argument("--seed", type=int, default=1234)
    fit.add_argument("--limit", type=int, default=0, help="use only N training rows (smoke tests)")
    fit.add_argument("--teacher", action="append", default=[], metavar="MODEL.keras",
                     help="distil from this trained model (repeat for an ensemble; probabilities averaged)")
    fit.add_argument("--kd-alpha", type=float, default=0.7, help="weight of the teacher distribution in the target")
    fit.add_argument("--kd-temperature", type=float, default=3.0, help="softening of the teacher distribution")
    fit.add_argument("--kd-targets", choices=["online", "precomputed"], default="online",
                     help="online: the teachers see every augmented batch (the recipe behind the shipped model); "
                          "precomputed: one pass of the teachers over the clean training faces before training, "
                          "no teacher in the step (faster for any run over ~1 epoch; its accuracy is not yet "
                          "measured against online)")
    fit.add_argument("--no-mixed-precision", action="store_true",
                     help="on a GPU, train in float32 (default: float16 under TensorFlow, bfloat16 under JAX)")
    fit.add_argument("--init-from", default="", metavar="MODEL.keras",
                     help="start from this trained model's weights (same architecture): a warm restart with a new "
                          "schedule, e.g. --lr 0.01 --warmup-epochs 1; from a model with another class count "
                          "(FER2013 to FER+) the backbone and the shared classes' classifier columns are copied")
    fit.add_argument("--snapshots", type=int, default=0,
                     help="keep the weights of the last N epochs (runs/<name>/snapshots/) for fer-train average")
    fit.add_argument("--arch-kwargs", type=json.loads, default={}, help='JSON, e.g. \'{"widths": [48, 96, 160]}\'')

    ev = sub.add_parser("evaluate", help="accuracy, per-class P/R/F1, macro-F1, confusion matrix (PNG+JSON)")
    ev.add_argument("model", type=Path, help="a .keras model with its .card.json beside it")
    _add_data_args(ev)
    ev.add_argument("--split", default="PrivateTest", help="split to report on (default: %(default)s)")
    ev.add_argument("--out", type=Path, default=None, help="report folder (default: beside the model)")
    ev.add_argument("--tta-flip", action="store_true", help="also report flip-averaged accuracy (separately)")

    en = sub.add_parser("ensemble", help="accuracy and macro-F1 of several models and of their softmax average "
                        "(a teacher for --teacher A --teacher B; the edge runs one network)")
    en.add_argument("models", type=Path, nargs="+", help=".keras models with their .card.json beside them")
    _add_data_args(en)
    en.add_argument("--splits", nargs="+", default=["PublicTest", "PrivateTest"],
                    help="splits to report on (default: %(default)s)")
    en.add_argument("--tta-flip", action="store_true", help="also report flip-averaged rows")
    en.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")

    ex = sub.add_parser("export", help="publish a run's best checkpoint (also while it still trains): model, "
                        "card, report")
    ex.add_argument("--run-dir", type=Path, required=True)
    ex.add_argument("--out", type=Path, default=Path("models"))
    _add_data_args(ex)

    avg = sub.add_parser("average", help="average the weights of a run's last epochs (BatchNorm recomputed); "
                         "selected over the best checkpoint only if better on PublicTest")
    avg.add_argument("--run-dir", type=Path, required=True)
    avg.add_argument("--from-epoch", type=int, required=True, help="first snapshot epoch to include")
    avg.add_argument("--bn-samples", type=int, default=10000, help="training faces for the BatchNorm statistics")
    _add_data_args(avg)

    cal = sub.add_parser("calibrate", help="fit a temperature on PublicTest (minimum NLL), fold it into the logit "
                         "layer, write the calibrated .keras, its card (ECE/NLL before and after) and "
                         "<name>.reliability.png", formatter_class=_DefaultsHelpFormatter)
    cal.add_argument("model", type=Path, help="a .keras model with its .card.json beside it")
    _add_data_args(cal)
    cal.set_defaults(dataset=None)
    next(a for a in cal._actions if a.dest == "dataset").help = "which data set to read (default: the card's)"
    cal.add_argument("--out", type=Path, default=None,
                     help="folder for the calibrated model and card (default: replace them beside the model)")
    sub.add_parser("archs", help="list the architectures in the registry with parameters and MACs")
    return parser


def cmd_stats(args: argparse.Namespace) -> int:
    from train.report import class_distribution_png, sample_grid_png

    dataset = _load(args)
    counts = dataset.class_counts()
    width = max(len(label) for label in dataset.labels)
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>11}" for s in counts))
    for i, label in enumerate(dataset.labels):
        print(f"{label:<{width}}  " + "  ".join(f"{counts[s][i]:>11}" for s in counts))
    print(f"{'total':<{width}}  " + "  ".join(f"{sum(counts[s]):>11}" for s in counts))
    for note in dataset.notes:
        print(f"note: {note}")
    args.out.mkdir(parents=True, exist_ok=True)
    dist = class_distribution_png(dataset, args.out / f"{dataset.name}_class_distribution.png")
    grid = sample_grid_png(dataset, args.out / f"{dataset.name}_samples.png")
    print(f"wrote {dist}\nwrote {grid}")
    return 0


def _publish(run_dir: Path, out: Path, dataset) -> Path:
    from train.fit import card_for_run, export_model
    from train.report import evaluate_and_report
    from train.rundir import RunState

    name = RunState(run_dir).data["config"]["name"]
    out_model = out / f"{name}.keras"
    model = export_model(run_dir, out_model)
    card = card_for_run(run_dir, model, dataset)
    evaluate_and_report(model, card, dataset, out_model, history_csv=run_dir / "history.csv")
    print(f"wrote {out_model} and {name}.card.json")
    return out_model


def cmd_export(args: argparse.Namespace) -> int:
    from train.rundir import RunState

    state = RunState(args.run_dir).data
    if not (args.run_dir / "best.keras").is_file() or not state:
        raise FileNotFoundError(f"{args.run_dir}: no best.keras/state.json (not a training run directory)")
    args.dataset = state["config"]["dataset"]
    _publish(args.run_dir, args.out, _load(args))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from train.augment import AugmentConfig, augment_with
    from train.fit import FitConfig, train

    name = args.name or ("eye_state" if args.dataset in EYE_DATASETS else "fer_edge")
    run_dir = args.run_dir or Path("runs") / name
    if args.resume and (run_dir / "state.json").is_file():
        from train.rundir import RunState

        args.dataset = RunState(run_dir).data["config"]["dataset"]  # the run decides what it trains on
    cfg = FitConfig(
        name=name, arch=args.arch, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        schedule=args.schedule, label_smoothing=args.label_smoothing, soft_labels=args.soft_labels,
        class_weight=args.class_weight, patience=args.patience, seed=args.seed, limit=args.limit,
        augment=AugmentConfig.none() if args.no_augment else AugmentConfig(), arch_kwargs=args.arch_kwargs,
        teachers=[str(p) for p in args.teacher], kd_alpha=args.kd_alpha, kd_temperature=args.kd_temperature,
        snapshots=args.snapshots, init_from=args.init_from, kd_targets=args.kd_targets,
        mixed_precision=not args.no_mixed_precision,
    )
    if args.dataset in EYE_DATASETS and not args.no_augment:
        cfg.augment = AugmentConfig(max_rotation_deg=10.0, max_shift=0.08, erase_prob=0.25)
    if args.augment and args.no_augment:
        raise ValueError("--augment and --no-augment contradict each other")
    if args.augment:
        cfg.augment = augment_with(cfg.augment, args.augment)
    dataset = _load(args)
    train(cfg, dataset, run_dir, resume=args.resume, new_horizon=args.epochs if args.new_horizon else None)
    _publish(run_dir, args.out, dataset)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from train.report import evaluate_and_report, load_model_with_card

    card, model = load_model_with_card(args.model)
    dataset = _load(args)
    metrics = evaluate_and_report(model, card, dataset, args.model, splits=(args.split,), tta_flip=args.tta_flip,
                                  out_dir=args.out, update_card=args.out is None)
    print(json.dumps(metrics[args.split]["summary"], indent=2))
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from train.ensemble import compare_ensemble, load_members, markdown_table

    members = load_members(args.models)
    rows = compare_ensemble(members, _load(args), splits=args.splits, tta_flip=args.tta_flip)
    print(markdown_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from train.average import average_run
    from train.rundir import RunState

    state = RunState(args.run_dir).data
    if not state:
        raise FileNotFoundError(f"{args.run_dir}: no state.json (not a training run directory)")
    args.dataset = state["config"]["dataset"]
    result = average_run(args.run_dir, _load(args), from_epoch=args.from_epoch, bn_samples=args.bn_samples)
    print(json.dumps(result, indent=2))
    if result["promoted"]:
        print(f"best.keras is now the {result['source']}; publish it with: fer-train export --run-dir {args.run_dir}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from edge.contract import card_path_for
    from train.calibration import RECORD_KEY, calibrate_and_save, is_calibrated, summary_line
    from train.report import load_model_with_card

    card, model = load_model_with_card(args.model)
    if is_calibrated(card):
        print(f"{args.model}: already calibrated (temperature {card.metrics[RECORD_KEY]['temperature']:.4f}); "
              "nothing written")
        return 0
    args.dataset = args.dataset or card.data.get("dataset", "fer2013")
    out = args.out or args.model.parent
    record = calibrate_and_save(model, card, _load(args), out)
    card.save(card_path_for(out / f"{card.name}.keras"))
    print(summary_line(record))
    return 0


def cmd_archs(_: argparse.Namespace) -> int:
    from train.models import REGISTRY, build_model, count_macs

    for name, spec in REGISTRY.items():
        size = 24 if name == "eyenet" else 48
        model = build_model(name, 7 if name != "eyenet" else 2, size)
        print(f"{name:16s} {model.count_params():>9,d} params {count_macs(model) / 1e6:7.1f} MMAC  {spec.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    no_data_given = getattr(args, "data", None) is None and getattr(args, "path", None) is None
    if no_data_given and args.command != "archs" and args.dataset != "folders" and default_data_root() is None:
        print("fer-train: no --data given and ../shared/data not found", file=sys.stderr)
        return 2
    commands = {"stats": cmd_stats, "fit": cmd_fit, "evaluate": cmd_evaluate, "ensemble": cmd_ensemble,
                "archs": cmd_archs, "export": cmd_export, "calibrate": cmd_calibrate, "average": cmd_average}
    try:
        return commands[args.command](args)
    except (DatasetError, FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        print(f"fer-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
