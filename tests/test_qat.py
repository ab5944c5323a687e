"""The int8 source transforms: input-normalization folding, the int8 emulator, quantization-aware fine-tuning."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import pattern_face

pytestmark = pytest.mark.slow


def _faces(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([pattern_face(i % 7, rng) for i in range(count)])


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    import keras

    return keras.models.load_model(tiny_model_dir / "models" / "tiny.keras")


def _ops(tflite: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    interp.allocate_tensors()
    return [op["op_name"] for op in interp._get_ops_details()]


def test_folding_the_input_normalization_keeps_the_float_function_and_reads_exact_pixels(tiny):
    from convert.export import fold_input_normalization, to_tflite

    faces = _faces(70, 1)
    folded = fold_input_normalization(tiny)
    assert folded is not None
    x = faces[..., None].astype(np.float32)
    assert np.allclose(folded.predict(x, verbose=0), tiny.predict(x, verbose=0), atol=1e-5)
    ops = _ops(to_tflite(folded, "int8", faces))
    # No MUL/ADD rounds the pixels before the first conv; the border is an explicit pad.
    assert ops[:3] == ["QUANTIZE", "PADV2", "CONV_2D"], ops
    assert "MUL" in _ops(to_tflite(tiny, "int8", faces))


def test_fold_chain_rejects_graphs_the_emulator_does_not_cover():
    from convert.qat import QATUnsupported, fold_chain
    from train.models import build_model

    for arch in ("mini_xception", "baseline_5conv"):  # residual adds; LeakyReLU
        with pytest.raises(QATUnsupported):
            fold_chain(build_model(arch, 7))


def test_int8_emulator_reproduces_the_converter(tiny):
    """Same activation scales as TFLite's calibration, same top-1 as the real int8 interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    from convert.export import to_tflite
    from convert.qat import Int8Emulator, fold_chain
    from edge.vision.classifier import TFLiteClassifier

    chain = fold_chain(tiny)
    calibration, faces = _faces(140, 2), _faces(210, 3)
    x = faces[..., None].astype(np.float32)
    assert np.allclose(chain.model.predict(x, verbose=0), tiny.predict(x, verbose=0), atol=1e-5)
    emulator = Int8Emulator(chain)
    emulator.calibrate(calibration)
    tflite = to_tflite(chain.model, "int8", calibration)
    interp = Interpreter(model_content=tflite)
    stored = [d["quantization"] for d in interp.get_tensor_details()
              if d["dtype"] == np.int8 and len(d["shape"]) >= 2 and d["quantization"][0] > 0]
    for scale, zero in emulator.ranges.values():
        assert any(s == pytest.approx(scale, rel=1e-4) and z == zero for s, z in stored), (scale, zero, stored)

    path = Path(tiny.name + "_emulated.tflite")
    try:
        path.write_bytes(tflite)
        real = TFLiteClassifier(path).predict(faces).argmax(1)
    finally:
        path.unlink()
    assert np.mean(emulator.predict_classes(faces) == real) >= 0.97
    # Without quantization the emulator is the float model (logits equal up to a constant per face).
    logits = emulator.logits(faces[:20], quantize=False).numpy()
    log_probs = np.log(tiny.predict(x[:20], verbose=0))
    assert np.allclose(logits - logits.mean(1, keepdims=True), log_probs - log_probs.mean(1, keepdims=True),
                       atol=1e-3)


def test_finetune_returns_the_weights_of_the_selected_epoch(tiny):
    from convert.qat import Int8Emulator, finetune, reference_logits

    calibration, train, select = _faces(70, 4), _faces(128, 5), _faces(70, 6)
    chain, summary = finetune(tiny, tiny, train, select, calibration, epochs=2, lr=1e-3, batch_size=32,
                               progress=False)
    assert len(summary["emulated_agreement_by_epoch"]) == 3
    assert summary["selected_epoch"] == int(np.argmax(summary["emulated_agreement_by_epoch"]))
    # Re-emulating the returned model gives the agreement recorded for the selected epoch.
    emulator = Int8Emulator(chain)
    emulator.calibrate(calibration)
    reference = np.argmax(reference_logits(tiny).predict(select[..., None].astype(np.float32), verbose=0), axis=1)
    agreement = float(np.mean(emulator.predict_classes(select) == reference))
    assert agreement == pytest.approx(max(summary["emulated_agreement_by_epoch"]), abs=1e-4)


def test_convert_cli_with_qat_reports_it(tiny_model_dir: Path, tmp_path: Path):
    from convert.cli import main

    for f in ("tiny.keras", "tiny.card.json"):
        shutil.copy(tiny_model_dir / "models" / f, tmp_path)
    code = main([str(tmp_path / "tiny.keras"), "--data", str(tiny_model_dir / "data"), "--no-onnx",
                 "--calibration-size", "140", "--latency-runs", "5", "--cache-dir", str(tmp_path / "c"),
                 "--qat-epochs", "1", "--max-int8-drop", "3.0", "--min-agreement", "0.95",
                 "--min-float-agreement", "0.97"])
    assert code == 0
    report = json.loads((tmp_path / "tiny.parity.json").read_text())
    assert report["int8_qat"]["epochs"] == 1 and report["int8_input_normalization_folded"] is True
    assert "fine-tuned quantization-aware" in (tmp_path / "tiny.parity.md").read_text()
