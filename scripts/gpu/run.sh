#!/usr/bin/env bash
# The GPU runner, as the device tool's `run` executes it in the repository root:
#   run(command="bash scripts/gpu/run.sh", carry=[".whl", ".stage/part-KK"], timeout_s=570)
# Installs the carried wheels the machine lacks (keras, namex, optree), then scripts/gpu/runner.py:
# unpack the staged payload once complete, train the queue, write tars + summary + log under $OUT.
# Locally (CPU dry run): PYTHON=.venv/bin/python OUT=/tmp/out bash scripts/gpu/run.sh --queue scripts/gpu/queue.tiny.json
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/.out}
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1 KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false \
  TF_CPP_MIN_LOG_LEVEL=2
PY=${PYTHON:-python3}
{
  echo "== $(date -u +%FT%TZ) $(uname -m) $($PY --version 2>&1)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
  if ! $PY -c "import keras" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
      echo "run.sh: keras is not installed and no wheels were carried (.whl/); see README 'Training on a GPU'"
      exit 3
    fi
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || exit 3
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  $PY -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
  $PY scripts/gpu/runner.py --out "$OUT" "$@"
} 2>&1 | tee -a "$OUT/runner.log"
exit "${PIPESTATUS[0]}"
