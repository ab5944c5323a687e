"""Parity report: does every artifact behave like the Keras model that was evaluated?

Accuracy and macro-F1 on the report split, top-1 agreement with Keras, the largest probability
difference, file size, and single-thread latency per face measured with the edge runtime itself.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.metrics import classification_metrics
from train.probability_metrics import ECE_BINS, ece, nll


@dataclass(frozen=True)
class Thresholds:
    max_int8_drop_pp: float = 1.0
    min_int8_agreement: float = 0.98
    min_float_agreement: float = 0.995


def measure_latency_us(classifier, image: np.ndarray, runs: int = 300, warmup: int = 30) -> float:
    """Median microseconds for one face, batch 1, on the classifier's thread setting."""
    for _ in range(warmup):
        classifier.predict(image)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        classifier.predict(image)
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e6)


def artifact_row(name: str, probs: np.ndarray, reference: np.ndarray | None, labels: np.ndarray,
                 label_names: list[str], path: Path | None, latency_us: float | None) -> dict[str, Any]:
    metrics = classification_metrics(labels, probs.argmax(1), label_names)["summary"]
    row: dict[str, Any] = {
        "artifact": name,
        "file": path.name if path else None,
        "bytes": path.stat().st_size if path and path.is_file() else None,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "agreement_with_keras": None,
        "max_prob_diff": None,
        "latency_us_1thread": latency_us,
        "ece": ece(probs, labels, ECE_BINS),
        "nll": nll(probs, labels),
        "mean_top_probability": float(np.max(probs, axis=1).mean()),
    }
    if reference is not None:
        row["agreement_with_keras"] = float(np.mean(probs.argmax(1) == reference.argmax(1)))
        row["max_prob_diff"] = float(np.max(np.abs(probs - reference)))
    return row


def check_thresholds(rows: list[dict[str, Any]], thresholds: Thresholds) -> list[str]:
    """Human-readable violations (empty when every artifact passes)."""
    keras_row = next(r for r in rows if r["artifact"] == "keras")
    problems = []
    for row in rows:
        if row["artifact"] == "keras":
            continue
        agreement = row["agreement_with_keras"]
        if row["artifact"] == "int8":
            drop_pp = (keras_row["accuracy"] - row["accuracy"]) * 100
            if drop_pp > thresholds.max_int8_drop_pp:
                problems.append(f"int8 loses {drop_pp:.2f} pp accuracy against Keras "
                                f"(limit {thresholds.max_int8_drop_pp:.2f} pp)")
            if agreement < thresholds.min_int8_agreement:
                problems.append(f"int8 top-1 agreement {agreement:.4f} is below {thresholds.min_int8_agreement:.4f}")
        elif agreement < thresholds.min_float_agreement:
            problems.append(f"{row['artifact']} top-1 agreement {agreement:.4f} is below "
                            f"{thresholds.min_float_agreement:.4f}")
    return problems


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ("| artifact | file | size | accuracy | macro-F1 | agreement | max prob diff | ECE | NLL | "
            "latency (1 thread) |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        size = f"{r['bytes'] / 1024:.0f} KiB" if r["bytes"] else "-"
        agree = f"{r['agreement_with_keras']:.4f}" if r["agreement_with_keras"] is not None else "(reference)"
        diff = f"{r['max_prob_diff']:.4f}" if r["max_prob_diff"] is not None else "-"
        lat = f"{r['latency_us_1thread']:.0f} us" if r["latency_us_1thread"] else "-"
        lines.append(f"| {r['artifact']} | {r['file'] or '-'} | {size} | {r['accuracy'] * 100:.2f}% | "
                     f"{r['macro_f1']:.4f} | {agree} | {diff} | {_num(r, 'ece')} | {_num(r, 'nll')} | {lat} |")
    return "\n".join(lines)


def _num(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.4f}" if row.get(key) is not None else "-"


def write_report(out_dir: Path, name: str, report: dict[str, Any]) -> tuple[Path, Path]:
    json_path = out_dir / f"{name}.parity.json"
    md_path = out_dir / f"{name}.parity.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    verdict = "PASS" if not report["violations"] else "FAIL: " + "; ".join(report["violations"])
    md = [
        f"# Parity report: {name}",
        "",
        f"Evaluated on **{report['split']}** ({report['samples']} faces) of `{report['dataset']}`; "
        f"int8 calibrated on {report['calibration']['size']} faces ({report['calibration']['source']}).",
        f"Latency: median of single-face invocations, 1 thread, runtime `{report['runtime']}`, "
        f"machine `{report['machine']}`.",
        "",
        markdown_table(report["artifacts"]),
        "",
        *_temperature_lines(report),
        *_int8_source_lines(report),
        *_tiebreak_lines(report),
        f"Thresholds: int8 drop <= {report['thresholds']['max_int8_drop_pp']} pp, int8 agreement >= "
        f"{report['thresholds']['min_int8_agreement']}, float agreement >= "
        f"{report['thresholds']['min_float_agreement']}. **{verdict}**",
        "",
    ]
    md_path.write_text("\n".join(md))
    return json_path, md_path


def _temperature_lines(report: dict[str, Any]) -> list[str]:
    t = report.get("probability_calibration")
    if not t:
        return ["No probability calibration: the probabilities are the model's own softmax.", ""]
    return [f"Probabilities calibrated: logits divided by a temperature of {t['temperature']:.4f} fitted by minimum "
            f"NLL on {t['fitted_on']}, folded into layer `{t['layer']}` before conversion (argmax unchanged); "
            f"ECE uses {t['ece_bins']} equal-width bins of the top-1 probability.", ""]


def _int8_source_lines(report: dict[str, Any]) -> list[str]:
    """How the int8 artifact's source differs from the float model (same float function unless QAT)."""
    lines = []
    if alpha := report.get("int8_equalization_alpha"):
        lines.append(f"int8 calibrated after cross-layer equalization of activation ranges (alpha {alpha}).")
    if report.get("int8_input_normalization_folded"):
        lines.append("int8 input normalization folded into the first convolution, so it reads the exact pixels.")
    if qat := report.get("int8_qat"):
        lines.append(f"int8 weights fine-tuned quantization-aware toward the float model for {qat['epochs']} "
                     f"epoch(s) (lr {qat['lr']}); emulated int8 agreement on PublicTest by epoch: "
                     f"{qat['emulated_agreement_by_epoch']}, epoch {qat['selected_epoch']} kept.")
    return [*lines, ""] if lines else []


def _tiebreak_lines(report: dict[str, Any]) -> list[str]:
    if not report.get("margin_scale"):
        return ["Converted without the tie-break head: int8 top-1 ties fall to the lower class index.", ""]
    int8 = next((r for r in report["artifacts"] if r["artifact"] == "int8"), {})
    return [f"Outputs: probabilities and pairwise logit margins (scale {report['margin_scale']}, see "
            f"`edge/vision/tiebreak.py`). Exact int8 top-1 ties settled by the margins: "
            f"{int8.get('top1_ties_settled', 0)}.",
            ""]


def machine_description() -> str:
    return f"{platform.machine()} {platform.processor() or platform.system()}".strip()
