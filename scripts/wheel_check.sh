#!/usr/bin/env bash
# Install as a user would, outside the checkout: build the wheel and sdist, install the wheel (edge
# runtime only, no TensorFlow) into a clean virtual environment in a temporary folder, and run
# `fer-edge --version`, `selftest` (every shipped model), `classify`, `run` and `replay` from there.
# CI runs it after the tests (.ci/run). It leaves dist/ with the wheel, the sdist and reference/: this
# machine's outputs, which scripts/arm64_check.sh compares the emulated arm64 outputs with.
#
#   scripts/wheel_check.sh            # PYTHON (default .venv-dev/bin/python, else python3) must have `build`
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-$([ -x .venv-dev/bin/python ] && echo .venv-dev/bin/python || echo python3)}
MAX_WHEEL_BYTES=$((5 * 1024 * 1024))

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fer-edge-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "wheel_check: $*" >&2; exit 1; }

echo "== building the wheel and sdist"
rm -rf dist
"$PYTHON" -m build -o dist . >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; fail "build failed"; }
wheels=(dist/fer_edge-*.whl) sdists=(dist/fer_edge-*.tar.gz)
wheel=${wheels[0]} sdist=${sdists[0]}
ls -l "$wheel" "$sdist"

echo "== wheel contents: int8 models, cards and golden files; no Keras, ONNX or float TFLite"
python3 - "$wheel" "$MAX_WHEEL_BYTES" <<'PY'
import os, re, sys, zipfile
wheel, limit = sys.argv[1], int(sys.argv[2])
names = zipfile.ZipFile(wheel).namelist()
data = "edge/shipped_models/"
required = [f"{data}{m}{s}" for m in ("fer_edge", "eye_state", "ferplus/fer_edge_ferplus")
            for s in ("_int8.tflite", ".card.json", ".golden.csv")] + ["edge/samples/astronaut.mp4"]
missing = [n for n in required if n not in names]
unwanted = [n for n in names if re.search(r"\.(keras|onnx|h5)$|_float(16|32)\.tflite$", n)]
size = os.path.getsize(wheel)
if missing or unwanted or size > limit:
    sys.exit(f"wheel_check: missing {missing}, unwanted {unwanted}, {size} bytes (limit {limit})")
print(f"ok: {len(names)} files, {size / 1e6:.1f} MB")
PY

echo "== clean venv in $WORK, the wheel with its runtime dependencies only"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check "$REPO/$wheel"
if "$WORK/venv/bin/python" -c "import tensorflow" 2>/dev/null; then fail "the edge install pulled in TensorFlow"; fi
export PATH="$WORK/venv/bin:$PATH"
mkdir "$WORK/outside" && cd "$WORK/outside"

fer-edge --version | tee version.txt
models=$(sed -n 's/.*(models: \(.*\))$/\1/p' version.txt)
case "$models" in "$WORK/venv/"*) ;; *) fail "models resolved to '$models', not the installed package";; esac
clip=$(python -c "import edge, pathlib; print(pathlib.Path(edge.__file__).parent / 'samples' / 'astronaut.mp4')")

echo "== selftest, every shipped model"
for model in "$models/fer_edge_int8.tflite" "$models/eye_state_int8.tflite" "$models/ferplus/fer_edge_ferplus_int8.tflite"; do
  fer-edge selftest --model "$model"
done

echo "== classify a face (a frame of the bundled clip)"
python - "$clip" face.png <<'PY'
import sys, cv2
cap = cv2.VideoCapture(sys.argv[1])
cap.set(cv2.CAP_PROP_POS_FRAMES, 30)
ok, frame = cap.read()
assert ok and cv2.imwrite(sys.argv[2], frame), "could not extract a frame"
PY
fer-edge classify face.png | tee classify.json
python3 -c "import json,sys; d=json.load(open('classify.json')); sys.exit(0 if len(d['faces']) == 1 else 'classify: expected one face')"

echo "== run on the bundled clip (the daemon's JSON lines)"
fer-edge run --max-frames 60 >run.jsonl 2>run.log || { tail -20 run.log >&2; fail "fer-edge run failed"; }
python3 "$REPO/scripts/compare_outputs.py" normalize-run run.jsonl >run.expression.jsonl
[ "$(wc -l <run.expression.jsonl)" -ge 10 ] || fail "fer-edge run wrote fewer than 10 expression events"
echo "ok: $(wc -l <run.expression.jsonl) expression events"

echo "== the same on the clip's frames as PNG files (lossless: scripts/arm64_check.sh expects them bit for bit)"
python - "$clip" frames 60 <<'PY'
import sys, pathlib, cv2
cap, out = cv2.VideoCapture(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir()
for i in range(int(sys.argv[3])):
    ok, frame = cap.read()
    assert ok and cv2.imwrite(str(out / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
PY
cat >frames.yaml <<'YAML'
# The bundled sample's settings, on the clip's first frames decoded on the reference machine.
source: {uri: frames, type: folder, fps: 15}
detector: {every_n_frames: 2}
output: {events: "-", every_n_frames: 5, stats_interval_s: 2}
alerts: {profile: driver}
YAML
fer-edge run --config frames.yaml >frames.jsonl 2>frames.log || { tail -20 frames.log >&2; fail "fer-edge run on frames failed"; }
python3 "$REPO/scripts/compare_outputs.py" normalize-run frames.jsonl >frames.expression.jsonl
[ "$(wc -l <frames.expression.jsonl)" -ge 10 ] || fail "fer-edge run on frames wrote fewer than 10 expression events"

echo "== replay with the driver profile (timeline JSON and the OpenCV plot)"
fer-edge replay "$clip" --profile driver --out replay
if [ ! -s replay/astronaut.driver.alerts.json ] || [ ! -s replay/astronaut.driver.signals.png ]; then
  fail "replay wrote no timeline or plot"
fi

mkdir -p "$REPO/dist/reference"
cp -r face.png classify.json run.expression.jsonl frames frames.yaml frames.expression.jsonl version.txt \
  "$REPO/dist/reference/"
echo "== wheel check passed; reference outputs in dist/reference"
