#!/usr/bin/env bash
# The wheel on an emulated Raspberry Pi: a Debian 12 (bookworm) arm64 root under qemu-user, the CPU
# pinned to a Pi core, the wheel installed with the device dependencies only (PyPI's aarch64 wheels),
# then `fer-edge selftest` (every shipped model against its golden file), `fer-edge classify` on a face
# and `fer-edge run` on the bundled clip's frames (PNG) and on the clip itself, compared with the x86
# outputs that scripts/wheel_check.sh wrote. CI stage (.ci/run).
#
#   sudo scripts/arm64_check.sh                  # needs dist/ from scripts/wheel_check.sh
#   sudo scripts/arm64_check.sh --wrong-golden   # the same on corrupted golden files: must exit 3
#
# environment: QEMU_CPU (cortex-a72 = Pi 4, cortex-a76 = Pi 5; default cortex-a72),
#   FER_EDGE_ARM64_ROOT (the cached root; default ~/.cache/fer-edge/arm64-root), DEBIAN_MIRROR.
# exit status: 0 same outputs, 3 an output differs from its golden file or reference, 1 set-up failure,
#   2 usage. Needs root (debootstrap, chroot, mounts) and network access to Debian and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

WRONG_GOLDEN=0
case "${1:-}" in
  --wrong-golden) WRONG_GOLDEN=1 ;;
  "") ;;
  -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "arm64_check: unknown option '$1'" >&2; exit 2 ;;
esac

export QEMU_CPU=${QEMU_CPU:-cortex-a72}
ROOT=${FER_EDGE_ARM64_ROOT:-$HOME/.cache/fer-edge/arm64-root}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=python3,python3-venv,ca-certificates
VENV=/opt/fer-edge-venv
RUN_FRAMES=60  # as in scripts/wheel_check.sh, which wrote the reference
say() { printf '== %s\n' "$*"; }
fail() { echo "arm64_check: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (debootstrap, chroot and mounts need it)"
wheels=(dist/fer_edge-*.whl)
wheel=${wheels[0]}
if [ ! -f "$wheel" ] || [ ! -d dist/reference ]; then
  fail "no dist/fer_edge-*.whl or dist/reference: run scripts/wheel_check.sh first"
fi

ensure_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The kernel must hand aarch64 ELF files to qemu: binfmt_misc mounted, the qemu-aarch64 entry enabled.
# qemu-user-static registers it with the F flag, so the interpreter works inside the chroot too.
ensure_binfmt() {
  local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  if [ ! -e "$entry" ]; then
    update-binfmts --import qemu-aarch64 2>/dev/null || true
    update-binfmts --enable qemu-aarch64
  fi
  grep -q '^enabled' "$entry" || fail "$entry is not enabled"
  grep -q '^flags:.*F' "$entry" || fail "$entry lacks the F flag (interpreter not usable inside a chroot)"
}

build_root() {
  if [ -f "$ROOT/.fer-edge-root" ] && [ "$(cat "$ROOT/.fer-edge-root")" = "bookworm $INCLUDE" ]; then
    say "cached arm64 root: $ROOT"
    return
  fi
  say "building a bookworm arm64 root in $ROOT (debootstrap, minbase; several minutes)"
  rm -rf "$ROOT.partial" "$ROOT"
  mkdir -p "$(dirname "$ROOT")"
  # A private mount namespace: debootstrap's /proc and /sys mounts vanish with it, even on failure.
  unshare -m --propagation private debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" \
    bookworm "$ROOT.partial" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 \
    || { tail -20 "$ROOT.debootstrap.log" >&2; fail "debootstrap failed (log: $ROOT.debootstrap.log)"; }
  echo "bookworm $INCLUDE" >"$ROOT.partial/.fer-edge-root"
  mv "$ROOT.partial" "$ROOT"
}

# Debian 12's qemu 7.2 shows the host's /proc/cpuinfo to the guest, and LiteRT's CPU probe crashes on an
# x86 cpuinfo; the guest gets one describing the pinned Pi core instead.
fake_cpuinfo() {
  local part
  case "$QEMU_CPU" in
    cortex-a72) part=0xd08 ;;
    cortex-a76) part=0xd0b ;;
    cortex-a53) part=0xd03 ;;
    *) fail "QEMU_CPU=$QEMU_CPU: use a Pi core (cortex-a72, cortex-a76, cortex-a53); -cpu max gives wrong int8 results" ;;
  esac
  for i in $(seq 0 $(($(nproc) - 1))); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$part"
  done
}

# Runs a command in the root with /proc (the fake cpuinfo), /sys (without it LiteRT's CPU probe fails and
# XNNPACK stays off: outputs move by 2-3 int8 steps), /dev, DNS, and the host's CA bundle and proxy settings
# for pip (a network that intercepts TLS has its own CA); the mounts end with the namespace.
in_root() {
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  cp "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/ssl/host-ca.crt"
  fake_cpuinfo >"$ROOT/.cpuinfo"
  # shellcheck disable=SC2016  # the inner script expands its own positional arguments
  unshare -m --propagation private bash -c '
    set -e
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --bind "$root/.cpuinfo" "$root/proc/cpuinfo"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
      QEMU_CPU="$QEMU_CPU" PIP_CERT=/etc/ssl/host-ca.crt ${http_proxy:+http_proxy=$http_proxy} \
      ${https_proxy:+https_proxy=$https_proxy} ${no_proxy:+no_proxy=$no_proxy} "$@"' in_root "$ROOT" "$@"
}

install_wheel() {
  local stamp deps
  deps=$(python3 - "$wheel" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
print("\n".join(sorted(l for l in z.read(meta).decode().splitlines() if l.startswith("Requires-Dist:") and "extra ==" not in l)))
PY
)
  stamp=$(printf '%s\n' "$deps" | sha256sum | cut -c1-16)
  mkdir -p "$ROOT/opt/check"
  cp "$wheel" "$ROOT/opt/check/"
  if [ "$(cat "$ROOT$VENV/.deps-stamp" 2>/dev/null)" != "$stamp" ]; then
    say "venv $VENV in the root with the device dependencies (aarch64 wheels from PyPI)"
    rm -rf "$ROOT$VENV"
    in_root python3 -m venv "$VENV"
    in_root "$VENV/bin/pip" install -q --disable-pip-version-check "/opt/check/$(basename "$wheel")"
    echo "$stamp" >"$ROOT$VENV/.deps-stamp"
  else
    say "cached venv $VENV; reinstalling the wheel only"
    in_root "$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps \
      "/opt/check/$(basename "$wheel")"
  fi
}

ensure_tools
ensure_binfmt
build_root
install_wheel

say "emulated CPU: QEMU_CPU=$QEMU_CPU"
in_root "$VENV/bin/python" - <<'PY'
import ctypes, platform
hwcap = ctypes.CDLL(None).getauxval(16)  # AT_HWCAP
print(f"machine {platform.machine()}, HWCAP {hwcap:#x}")
assert platform.machine() == "aarch64", "not running as aarch64"
assert not hwcap & (1 << 22), "the emulated CPU has SVE: QEMU_CPU was not applied (Pi cores have no SVE)"
PY

OUT=$ROOT/opt/check/out
rm -rf "$OUT" && mkdir -p "$OUT"
cp -r dist/reference/face.png dist/reference/frames dist/reference/frames.yaml "$OUT/"
ref=dist/reference
models=$(in_root "$VENV/bin/python" -c "from edge.shipped import models_dir; print(models_dir())")
if [ "$WRONG_GOLDEN" = 1 ]; then
  say "corrupting the golden files and reference outputs (every raw score row reversed, classify probabilities shifted)"
  for golden in "$ROOT$models"/*.golden.csv "$ROOT$models"/ferplus/*.golden.csv; do
    python3 - "$golden" <<'PY'
import sys
path = sys.argv[1]
lines = open(path).read().splitlines()
rows = [lines[0]] + [",".join(r.split(",")[:2] + [" ".join(reversed(r.split(",")[2].split()))]) for r in lines[1:]]
open(path, "w").write("\n".join(rows) + "\n")
PY
  done
  ref=$(mktemp -d) && trap 'rm -rf "$ref"' EXIT && cp dist/reference/*.json* "$ref/"
  sed -i 's/\("happy": \{0,1\}\)0\./\10.0/g' "$ref/classify.json" "$ref"/*.expression.jsonl
fi

failures=0
check() {  # check NAME DIFFERS_STATUS COMMAND...: 0 same, DIFFERS_STATUS differs, anything else a failure
  local rc=0
  "${@:3}" || rc=$?
  if [ "$rc" = 0 ]; then
    echo "ok: $1"
  elif [ "$rc" = "$2" ]; then
    echo "DIFFERS: $1"
    failures=$((failures + 1))
  else
    fail "$1: exit status $rc"
  fi
}
say "fer-edge selftest (golden files), classify and run on $QEMU_CPU"
for model in fer_edge_int8.tflite eye_state_int8.tflite ferplus/fer_edge_ferplus_int8.tflite; do
  check "selftest $model" 1 in_root "$VENV/bin/fer-edge" selftest --model "$models/$model"
done
in_root sh -c "cd /opt/check/out && $VENV/bin/fer-edge classify face.png >classify.json"
check "classify face.png" 3 python3 scripts/compare_outputs.py classify "$ref/classify.json" "$OUT/classify.json"
in_root sh -c "cd /opt/check/out && $VENV/bin/fer-edge run --config frames.yaml >frames.jsonl 2>frames.log" \
  || { tail -20 "$OUT/frames.log" >&2; fail "fer-edge run on the frames failed"; }
check "run on the clip's frames (PNG)" 3 python3 scripts/compare_outputs.py run "$ref/frames.expression.jsonl" \
  "$OUT/frames.jsonl"
# The clip itself: this CPU's MPEG-4 decoder rounds differently from x86's, so only close is expected.
in_root sh -c "cd /opt/check/out && $VENV/bin/fer-edge run --max-frames $RUN_FRAMES >run.jsonl 2>run.log" \
  || { tail -20 "$OUT/run.log" >&2; fail "fer-edge run failed"; }
check "run on the bundled clip, $RUN_FRAMES frames" 3 python3 scripts/compare_outputs.py run --close \
  "$ref/run.expression.jsonl" "$OUT/run.jsonl"

if [ "$failures" -gt 0 ]; then
  echo "arm64 check FAILED: $failures output(s) differ on the emulated $QEMU_CPU"
  exit 3
fi
echo "arm64 check passed: every output on the emulated $QEMU_CPU matches"
