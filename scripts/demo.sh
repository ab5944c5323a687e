#!/usr/bin/env bash
# The README's main job on a fresh machine: install the edge runtime only (no TensorFlow) into a
# virtual environment and run the daemon on the shipped int8 model against the bundled sample clip.
# Extra arguments go to `fer-edge run` (e.g. --config my.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${FER_EDGE_VENV:-.venv}
if [ ! -x "$VENV/bin/fer-edge" ]; then
  echo "== creating $VENV with the edge runtime (numpy, OpenCV headless, LiteRT, ...)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e .
fi
echo "== fer-edge run $*  (JSON-lines events below; logs on stderr)" >&2
exec "$VENV/bin/fer-edge" run "$@"
