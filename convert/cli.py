"""``fer-convert``: Keras model -> int8/float16/float32 TFLite + ONNX, parity report, golden outputs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from convert.parity import Thresholds
from edge.tiebreak import DEFAULT_MARGIN_SCALE

log = logging.getLogger("fer-convert")

EPILOG = """examples:
  fer-convert models/fer_edge.keras --data ../shared/data --out models/ --qat-epochs 2   # the shipped artifacts
  fer-convert models/fer_edge.keras --out /tmp/quick --no-onnx                          # quick, no fine-tuning
  fer-convert models/eye_state.keras --out models/ --equalize-alpha 0 --qat-epochs 2
A model whose card has no probability-calibration record first gets a temperature fitted on PublicTest and
folded into its logit layer (train/calibration.py); the calibrated .keras is written to the output folder.
exit status: 0 all artifacts within thresholds, 3 a threshold was violated (the report says which),
2 bad input (model, card or data)."""


def convert_model(
    model,
    card,
    dataset,
    out_dir: Path,
    *,
    calibration: np.ndarray,
    thresholds: Thresholds | None = None,
    opset: int = 17,
    onnx: bool = True,
    latency_runs: int = 300,
    golden: bool = True,
    calibration_source: str = "Training, class-stratified",
    margin_scale: float | None = DEFAULT_MARGIN_SCALE,
    equalize_alpha: float | None = 0.5,
    qat_epochs: int = 0,
    qat_lr: float = 1e-4,
    progress: bool = False,
) -> dict[str, Any]:
    """Write every artifact, measure parity, update the card. Returns the report (see ``violations``).

    ``margin_scale`` adds the tie-break head (pairwise logit margins, ``edge.tiebreak``) to every
    artifact; None converts the model as it is. ``equalize_alpha`` applies cross-layer equalization of
    activation ranges before int8 calibration (the float function is unchanged); None skips it.
    The int8 source also has its input normalization folded into the first conv
    (``fold_input_normalization``), and ``qat_epochs`` > 0 fine-tunes its int8 emulation toward the
    float model (``convert.qat``), selecting on PublicTest; both leave the float artifacts untouched.
    """
    from convert.export import to_onnx, to_tflite, with_tiebreak_head
    from convert.parity import artifact_row, check_thresholds, machine_description, measure_latency_us, write_report
    from edge.classifier import TFLiteClassifier, load_classifier
    from edge.contract import card_path_for
    from edge.golden import golden_inputs, write_golden

    thresholds = thresholds or Thresholds()
    out_dir.mkdir(parents=True, exist_ok=True)
    has_private = "PrivateTest" in dataset.splits and len(dataset.splits["PrivateTest"]) > 0
    split_name = "PrivateTest" if has_private else "PublicTest"
    split = dataset.split(split_name)
    label_names = list(card.labels)
    if label_names != list(dataset.labels):
        raise ValueError(f"model labels {label_names} differ from the data set's {list(dataset.labels)}")

    keras_probs = np.asarray(model.predict(split.images.astype(np.float32)[..., None], batch_size=256, verbose=0))
    rows = [artifact_row("keras", keras_probs, None, split.labels, label_names, None, None)]
    paths: dict[str, Path] = {}

    def with_head(m):
        return (with_tiebreak_head(m, margin_scale) if margin_scale else None) or m

    deployed = with_head(model)
    outputs = ["probabilities", "pairwise_margins"] if len(deployed.outputs) == 2 else ["probabilities"]
    int8_source, int8_notes = _int8_source(model, with_head, dataset, calibration, equalize_alpha, qat_epochs,
                                           qat_lr, progress)
    for mode in ("float32", "float16", "int8"):
        log.info("converting to %s TFLite", mode)
        data = to_tflite(int8_source if mode == "int8" else deployed, mode, calibration if mode == "int8" else None)
        path = out_dir / f"{card.name}_{mode}.tflite"
        path.write_bytes(data)
        paths[mode] = path
    if onnx:
        log.info("exporting ONNX (opset %d)", opset)
        paths["onnx"] = to_onnx(deployed, out_dir / f"{card.name}.onnx", opset)

    runtime = None
    sample = split.images[0]
    for key, path in paths.items():
        classifier = load_classifier(path, num_threads=1)
        runtime = runtime or classifier.backend
        probs = np.concatenate([classifier.predict(split.images[i : i + 256]) for i in range(0, len(split), 256)])
        ties = getattr(classifier, "ties_broken", 0) if key == "int8" else None
        latency = measure_latency_us(classifier, sample, runs=latency_runs)
        rows.append(artifact_row(key, probs, keras_probs, split.labels, label_names, path, latency))
        if ties is not None:
            rows[-1]["top1_ties_settled"] = ties
        log.info("%s: accuracy %.4f agreement %.4f latency %.0f us", key, rows[-1]["accuracy"],
                 rows[-1]["agreement_with_keras"], latency)

    if golden:
        int8 = TFLiteClassifier(paths["int8"], num_threads=1)
        inputs = golden_inputs(int8.input_size[0])
        raw = np.concatenate([int8.raw_predict(img) for img in inputs.values()])
        classes = [int(np.argmax(int8.predict(img)[0])) for img in inputs.values()]
        paths["golden"] = write_golden(out_dir / f"{card.name}.golden.csv", list(inputs), raw, classes)

    violations = check_thresholds(rows, thresholds)
    report = {
        "model": card.name,
        "dataset": dataset.name,
        "split": split_name,
        "samples": len(split),
        "calibration": {"size": len(calibration), "source": calibration_source},
        "thresholds": asdict(thresholds),
        "runtime": runtime,
        "machine": machine_description(),
        "onnx_opset": opset if onnx else None,
        "outputs": outputs,
        "margin_scale": margin_scale if len(outputs) == 2 else None,
        "probability_calibration": _temperature_note(card),
        **int8_notes,
        "artifacts": rows,
        "violations": violations,
    }
    json_path, md_path = write_report(out_dir, card.name, report)
    for key, path in paths.items():
        card.add_artifact(key, path, **({} if key in ("golden", "keras") else {"outputs": outputs}))
    card.metrics["parity"] = {r["artifact"]: {k: v for k, v in r.items() if k not in ("artifact", "file")}
                              for r in rows}
    card.metrics["parity_split"] = split_name
    card.save(card_path_for(out_dir / f"{card.name}.keras"))
    log.info("wrote %s and %s", json_path, md_path)
    return report


def _temperature_note(card) -> dict[str, Any] | None:
    from train.calibration import RECORD_KEY

    record = card.metrics.get(RECORD_KEY)
    return {k: record[k] for k in ("temperature", "fitted_on", "layer", "ece_bins")} if record else None


def _int8_source(model, with_head, dataset, calibration, equalize_alpha, qat_epochs, qat_lr, progress):
    """The model the int8 artifact is converted from, and the report fields that say how it was made.

    Cross-layer equalization, then either quantization-aware fine-tuning (whose folded model already
    reads raw pixels) or folding the input normalization into the first conv.
    """
    from convert.export import equalize_activations, fold_input_normalization

    equalized = equalize_activations(model, calibration, equalize_alpha) if equalize_alpha else None
    source = equalized or model
    chain, qat = (_quantization_aware(model, source, dataset, calibration, qat_epochs, qat_lr, progress)
                  if qat_epochs > 0 else (None, None))
    int8_source = with_head(chain.model if chain else source)
    folded_input = None if chain else fold_input_normalization(int8_source)
    return folded_input or int8_source, {
        "int8_equalization_alpha": equalize_alpha if equalized is not None else None,
        "int8_input_normalization_folded": chain is not None or folded_input is not None,
        "int8_qat": qat,
    }


def _quantization_aware(model, source, dataset, calibration, epochs: int, lr: float, progress: bool):
    """(fine-tuned FoldedChain, summary) or (None, None) when the emulator does not cover the model."""
    from convert.qat import QATUnsupported, finetune

    if "PrivateTest" not in dataset.splits or "PublicTest" not in dataset.splits:
        raise ValueError("quantization-aware fine-tuning selects on PublicTest and reports on PrivateTest; "
                         f"the data set has {dataset.counts_text()}")
    try:
        return finetune(model, source, dataset.split("Training").images, dataset.split("PublicTest").images,
                        calibration, epochs=epochs, lr=lr, progress=progress)
    except QATUnsupported as exc:
        log.warning("quantization-aware fine-tuning skipped: %s", exc)
        return None, None


def _calibrate_probabilities(model, card, dataset, out_dir: Path, skip: bool) -> None:
    """Fold a PublicTest temperature into the float model first, so every artifact is calibrated."""
    from train.calibration import RECORD_KEY, CalibrationError, calibrate_and_save, is_calibrated, summary_line

    if is_calibrated(card):
        log.info("already calibrated (temperature %.4f), not re-calibrating", card.metrics[RECORD_KEY]["temperature"])
    elif skip:
        log.info("--no-temperature: converting without probability calibration")
    else:
        try:
            record = calibrate_and_save(model, card, dataset, out_dir)
        except CalibrationError as exc:
            raise CalibrationError(f"{exc} (--no-temperature converts without probability calibration)") from None
        log.info("probability calibration: %s", summary_line(record))


def load_calibration_file(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read calibration faces ({exc})") from None
    if data.ndim != 3 or data.shape[1:] != size or data.dtype != np.uint8 or len(data) == 0:
        raise ValueError(f"{path}: calibration faces must be uint8 (N, {size[0]}, {size[1]}), got {data.dtype} "
                         f"{data.shape}")
    return data


def build_parser() -> argparse.ArgumentParser:
    from train.datasets import default_cache_dir

    p = argparse.ArgumentParser(
        prog="fer-convert",
        description="Convert a trained Keras model to int8/float16/float32 TFLite and ONNX, and prove parity.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="a .keras model with its .card.json beside it")
    p.add_argument("--data", type=Path, default=None, help="data root (default: ../shared/data when present)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the model's folder)")
    p.add_argument("--calibration-size", type=int, default=3000,
                   help="class-stratified training faces for int8 calibration (default: %(default)s)")
    p.add_argument("--calibration-data", type=Path, default=None,
                   help="calibrate on these faces instead: a .npy of uint8 (N, H, W) crops, e.g. from the "
                        "deployment camera (default: class-stratified training faces)")
    p.add_argument("--max-int8-drop", type=float, default=1.0, help="allowed int8 accuracy loss in pp (default: 1.0)")
    p.add_argument("--min-agreement", type=float, default=0.98, help="minimum int8 top-1 agreement (default: 0.98)")
    p.add_argument("--min-float-agreement", type=float, default=0.995,
                   help="minimum top-1 agreement of the float32, float16 and ONNX artifacts (default: %(default)s); "
                        "on a small evaluation set one near-tie flip weighs a lot")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 13-18 (default: 17)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    p.add_argument("--margin-scale", type=float, default=DEFAULT_MARGIN_SCALE,
                   help="scale of the tie-break head's pairwise logit margins, which settle exact int8 top-1 "
                        "ties (see edge/tiebreak.py); 0 leaves the head out (default: %(default)s)")
    p.add_argument("--equalize-alpha", type=float, default=0.5,
                   help="cross-layer equalization of activation ranges before int8 calibration, exponent 0-1 "
                        "(0.5 balances activation and weight ranges; 0 turns it off) (default: %(default)s)")
    p.add_argument("--qat-epochs", type=int, default=0,
                   help="quantization-aware fine-tuning of the int8 artifact toward the float model, in epochs "
                        "over the training faces (plain conv chains such as edgefer; ~2-4 min per epoch on 2 "
                        "CPU cores; the epoch with the best int8 agreement on PublicTest is kept; 0 skips it) "
                        "(default: %(default)s)")
    p.add_argument("--qat-lr", type=float, default=1e-4, help="peak learning rate of that fine-tuning")
    p.add_argument("--no-temperature", action="store_true",
                   help="do not fit and fold a temperature (probability calibration on PublicTest) before converting "
                        "a model whose card has no calibration record; a calibrated model is never re-calibrated")
    p.add_argument("--latency-runs", type=int, default=300, help="timed single-face runs per artifact")
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from convert.export import representative_set
    from convert.parity import markdown_table
    from edge.contract import ModelCard, ModelCardError, card_path_for
    from train.datasets import DatasetError, load_dataset

    try:
        if not args.model.is_file():
            raise FileNotFoundError(f"{args.model}: model not found")
        card = ModelCard.load(card_path_for(args.model))
        dataset = load_dataset(card.data.get("dataset", "fer2013"), args.data, cache_dir=args.cache_dir)
        import keras

        try:
            model = keras.models.load_model(args.model, compile=False)
        except Exception as exc:  # keras raises many types for a corrupt archive
            raise ValueError(f"{args.model}: cannot load the Keras model ({exc})") from None
        _calibrate_probabilities(model, card, dataset, args.out or args.model.parent, args.no_temperature)
        train_split = dataset.split("Training")
        if args.calibration_data is not None:
            calibration = load_calibration_file(args.calibration_data, (card.input.height, card.input.width))
        else:
            calibration = representative_set(train_split.images, train_split.labels, args.calibration_size, args.seed)
        report = convert_model(
            model, card, dataset, args.out or args.model.parent, calibration=calibration,
            thresholds=Thresholds(args.max_int8_drop, args.min_agreement, args.min_float_agreement), opset=args.opset,
            onnx=not args.no_onnx, latency_runs=args.latency_runs, margin_scale=args.margin_scale or None,
            equalize_alpha=args.equalize_alpha or None, qat_epochs=args.qat_epochs, qat_lr=args.qat_lr,
            progress=sys.stderr.isatty(),
            calibration_source=str(args.calibration_data) if args.calibration_data else "Training, class-stratified",
        )
    except (FileNotFoundError, ModelCardError, DatasetError, ValueError) as exc:  # CalibrationError too
        print(f"fer-convert: error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(report["artifacts"]))
    if report["violations"]:
        for problem in report["violations"]:
            print(f"fer-convert: threshold violated: {problem}", file=sys.stderr)
        return 3
    print("parity: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
