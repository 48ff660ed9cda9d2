#!/usr/bin/env bash
# The GPU check: prepared on this (online) machine, run on a lent GPU host that has no network.
#
#   scripts/gpu_check.sh --prepare   # here: the wheels the GPU host lacks -> .gpu-carry/ (git-
#                                    # ignored); prints its size in MiB and the `carry` list
#   scripts/gpu_check.sh             # on the GPU host, from the repo root (about 5-8 minutes)
#   scripts/gpu_check.sh --dry-run   # anywhere (CI): the plan; nothing is built or run on a GPU
#
# The GPU host it is written for: one NVIDIA H100 (sm_90), Python 3.12 with torch (CUDA 13),
# nvcc 13, cuda-bindings, the onnxruntime CPU package, no TensorRT, no trl / datasets / sam2 /
# hydra / onnxslim, no network (only what travels with the working tree, 64 MiB in all).
# On the GPU host it
#   1. reads the GPU's compute capability (nvidia-smi) -> CMAKE_CUDA_ARCHITECTURES,
#   2. installs the carried wheels of packages it lacks (or has at another version) into a
#      scratch folder (pip --no-index --no-deps: nothing from the network); a wheel that was
#      not carried makes its test skip, saying so,
#   3. makes the project importable from a scratch folder of symlinks (no build backend runs),
#   4. builds csrc/ with nvcc for that architecture (-DSEGZERO_REQUIRE_CUDA=ON),
#   5. runs the `-m gpu` tests only: the CUDA kernels and the CUDA pixel path against the CPU
#      twin (odd sizes, pitched NV12 in host and device memory), onnxruntime's CUDA execution
#      provider against its CPU one (or says the CUDA one is absent), one GRPO step with bf16
#      autocast; the TensorRT tests skip with the reason where TensorRT is absent,
#   6. times the kernels (benchmarks/bench_kernels.py),
#   7. writes three plain files directly under $OUT (or --out DIR): gpu_check.log (all
#      output), gpu-tests.xml (JUnit) and gpu_check.json (timings, test counts). Builds and
#      scratch files go to --work DIR (default $TMPDIR/segzero-gpu-check), never under $OUT.
#
# Options: --out DIR, --work DIR, --carry DIR (default .gpu-carry), --python PY (default
# python3; for --prepare .venv/bin/python when present), --gpu-python-version X.Y (--prepare;
# default 3.12). Environment for --dry-run: GPU_CHECK_FAKE_GPU="NAME, MAJOR.MINOR" (default
# "NVIDIA H100 80GB HBM3, 9.0").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
start=$(date +%s)

mode=check
CARRY=.gpu-carry
OUTDIR="${OUT:-$ROOT/gpu-check}"
WORK="${TMPDIR:-/tmp}/segzero-gpu-check"
PY=
GPU_PYVER=3.12
CARRY_LIMIT_MIB=64
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) mode=dry ;;
        --prepare) mode=prepare ;;
        --carry) CARRY=$2; shift ;;
        --out) OUTDIR=$2; shift ;;
        --work) WORK=$2; shift ;;
        --python) PY=$2; shift ;;
        --gpu-python-version) GPU_PYVER=$2; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$PY" ]; then
    PY=python3
    [ "$mode" = prepare ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
fi

# Wheels carried to the GPU host: "import-name=distribution==version", dependencies first.
# trl and datasets (with datasets' dill and multiprocess) for the GRPO step; transformers at
# the project's pin (the host's is older). Pure-Python wheels (multiprocess: per Python).
CARRIED=(
    "dill=dill==0.4.1"
    "multiprocess=multiprocess==0.70.19"
    "datasets=datasets==5.2.0"
    "transformers=transformers==5.24.0"
    "trl=trl==1.16.0"
)

GPU_MARK='^(pytestmark = .*pytest\.mark\.gpu\b|@pytest\.mark\.gpu\b)'
log() { printf '== %s\n' "$*"; }
elapsed() { echo $(( $(date +%s) - start )); }
mib() { du -sb "$@" 2>/dev/null | awk '{s += $1} END {printf "%.1f", s / 1048576}'; }

if [ "$mode" = prepare ]; then
    wheels="$CARRY/wheels"
    mkdir -p "$wheels"
    reqs=()
    for entry in "${CARRIED[@]}"; do reqs+=("${entry#*=}"); done
    log "wheels for CPython $GPU_PYVER (x86_64) into $wheels: ${reqs[*]}"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$GPU_PYVER" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$wheels" "${reqs[@]}"
    for whl in "$wheels"/*.whl; do  # keep only the pinned versions (one of each)
        keep=0
        for req in "${reqs[@]}"; do
            name=${req%%==*}
            case "$(basename "$whl")" in "${name//-/_}-${req#*==}-"* | "$name-${req#*==}-"*) keep=1 ;; esac
        done
        [ $keep = 1 ] || { echo "removing $(basename "$whl") (not pinned here)"; rm -f "$whl"; }
    done
    git check-ignore -q "$CARRY" || { echo "gpu_check: $CARRY is not git-ignored" >&2; exit 1; }
    carry_mib=$(mib "$CARRY")
    tree_mib=$(git ls-files -z -co --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -n 1 \
        | awk '{printf "%.1f", $1 / 1048576}')
    total=$(awk -v a="$carry_mib" -v b="$tree_mib" 'BEGIN {printf "%.1f", a + b}')
    echo "carried folder: $CARRY ($carry_mib MiB; the working tree adds $tree_mib MiB: $total of $CARRY_LIMIT_MIB MiB)"
    echo "carry: [\"$CARRY\"]"
    if awk -v t="$total" -v l="$CARRY_LIMIT_MIB" 'BEGIN {exit !(t >= l)}'; then
        echo "gpu_check: $total MiB would travel, over the $CARRY_LIMIT_MIB MiB limit" >&2
        exit 1
    fi
    exit 0
fi

mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
JUNIT="$OUTDIR/gpu-tests.xml"
TIMINGS="$OUTDIR/gpu_check.json"
: >"$LOG"
exec > >(tee -a "$LOG") 2> >(tee -a "$LOG" >&2)
run() {  # run a command, or print it under --dry-run
    if [ "$mode" = dry ]; then printf 'would run: %s\n' "$*"; else "$@"; fi
}
step_names=()
step_secs=()
step_done() { step_names+=("$1"); step_secs+=("$(( $(date +%s) - $2 ))"); }

# --- 1. the GPU ------------------------------------------------------------------------------
if [ "$mode" = dry ]; then
    gpu_line="${GPU_CHECK_FAKE_GPU:-NVIDIA H100 80GB HBM3, 9.0}"
else
    command -v nvidia-smi >/dev/null || { echo "gpu_check: nvidia-smi not found: no GPU here" >&2; exit 1; }
    gpu_line=$(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader | head -n 1)
fi
gpu_name=$(printf '%s' "$gpu_line" | cut -d, -f1 | xargs)
cc=$(printf '%s' "$gpu_line" | cut -d, -f2 | xargs)
if ! printf '%s' "$cc" | grep -Eq '^[0-9]+\.[0-9]+$'; then
    echo "gpu_check: cannot read the compute capability from '$gpu_line'" >&2
    exit 1
fi
ARCH=${cc/./}
log "GPU: $gpu_name, compute capability $cc -> CMAKE_CUDA_ARCHITECTURES=$ARCH"
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ "$mode" != dry ] && [ ! -x "$nvcc_bin" ]; then
    echo "gpu_check: nvcc not found (PATH or /usr/local/cuda/bin)" >&2
    exit 1
fi
log "python: $("$PY" -c 'import sys; print(sys.version.split()[0])') ($PY)"

# --- 2. carried wheels -----------------------------------------------------------------------
t0=$(date +%s)
specs=()
for entry in "${CARRIED[@]}"; do specs+=("$entry"); done
# the carried packages this Python lacks, or has at another version
todo=$("$PY" - "${specs[@]}" <<'EOF'
import importlib
import sys

for spec in sys.argv[1:]:
    module, req = spec.split("=", 1)
    try:
        have = getattr(importlib.import_module(module), "__version__", None)
    except Exception:
        have = None
    if have != req.split("==")[1]:
        print(req)
EOF
)
SITE_WHEELS="$WORK/wheels-site"
if [ -z "$todo" ]; then
    log "carried wheels: none needed (every carried package is installed at its pin)"
else
    wheel_files=()
    absent=()
    for req in $todo; do
        name=${req%%==*}
        found=$(ls "$CARRY/wheels/${name//-/_}-${req#*==}-"*.whl "$CARRY/wheels/$name-${req#*==}-"*.whl 2>/dev/null | head -n 1 || true)
        if [ -n "$found" ]; then wheel_files+=("$found"); else absent+=("$req"); fi
    done
    if [ ${#absent[@]} -gt 0 ]; then
        log "not carried (run scripts/gpu_check.sh --prepare, then carry $CARRY): ${absent[*]}; the tests that need them skip"
    fi
    if [ ${#wheel_files[@]} -gt 0 ]; then
        log "carried wheels: installing ${wheel_files[*]##*/} into $SITE_WHEELS"
        run rm -rf "$SITE_WHEELS"
        run "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$SITE_WHEELS" "${wheel_files[@]}"
    fi
fi
step_done wheels "$t0"

# --- 3. the project on PYTHONPATH, with its entry points -------------------------------------
SITE="$WORK/site"
rm -rf "$SITE" && mkdir -p "$SITE"
ln -s "$ROOT/segzero_edge" "$SITE/segzero_edge"
ln -s "$ROOT/export" "$SITE/segzero_export"
ln -s "$ROOT/train" "$SITE/segzero_train"
ln -s "$ROOT/benchmarks" "$SITE/segzero_bench"
"$PY" - "$ROOT/pyproject.toml" "$SITE" <<'EOF'
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

project = tomllib.loads(Path(sys.argv[1]).read_text())["project"]
info = Path(sys.argv[2]) / f"segzero_edge-{project['version']}.dist-info"
info.mkdir()
(info / "METADATA").write_text(
    f"Metadata-Version: 2.1\nName: segzero-edge\nVersion: {project['version']}\n"
)
lines = []
groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
for group, eps in groups.items():
    lines.append(f"[{group}]")
    lines += [f"{name} = {target}" for name, target in eps.items()]
(info / "entry_points.txt").write_text("\n".join(lines) + "\n")
EOF
export PYTHONPATH="$SITE:$SITE_WHEELS${PYTHONPATH:+:$PYTHONPATH}"
commands=$("$PY" -c "from segzero_edge.commands import registered; print(' '.join(sorted(registered())))")
log "project: importable from $SITE (CLI commands: $commands)"

# --- 4. csrc/ with nvcc ----------------------------------------------------------------------
t0=$(date +%s)
BUILD="$WORK/build"
run cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSEGZERO_CUDA=ON \
    -DSEGZERO_REQUIRE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin" \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DSEGZERO_COPY_TO_PACKAGE=OFF
run cmake --build "$BUILD" -j"$(nproc)"
export SEGZERO_NATIVE_LIB="$BUILD/libsegzero_kernels.so"
if [ "$mode" != dry ]; then
    "$PY" -c "from segzero_edge import native; ok, why = native.available(); \
assert ok and native.cuda_available(), why; print('native:', why)"
fi
step_done build "$t0"
log "build: csrc/ for sm_$ARCH ($(elapsed) s so far)"

# --- 5. the -m gpu tests ---------------------------------------------------------------------
trt=$("$PY" -c "from segzero_edge.segmenter.tensorrt import available; print(available()[1])")
log "TensorRT backend: $trt"
ort=$("$PY" -c "
try:
    import onnxruntime as o
    print(o.__version__, 'providers:', ', '.join(o.get_available_providers()))
except ImportError as e:
    print('not installed:', e)")
log "onnxruntime: $ort"
# the test files with GPU tests (a module-level or per-test gpu mark)
mapfile -t TESTS < <(grep -lE "$GPU_MARK" tests/test_*.py | sort)
t0=$(date +%s)
set +e
run timeout 330 "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs --durations=15 \
    --junitxml="$JUNIT" "${TESTS[@]}"
rc_tests=$?
set -e
step_done tests "$t0"

# --- 6. kernel timings -----------------------------------------------------------------------
t0=$(date +%s)
BENCH_LOG="$WORK/bench_kernels.txt"
if [ "$mode" = dry ]; then
    run "$PY" benchmarks/bench_kernels.py --repeats 7
elif [ "$(elapsed)" -lt 420 ]; then
    set +e
    timeout 60 "$PY" benchmarks/bench_kernels.py --repeats 7 >"$BENCH_LOG" 2>&1
    rc_bench=$?
    set -e
    cat "$BENCH_LOG"
    [ $rc_bench -eq 0 ] || log "bench_kernels: exit $rc_bench"
else
    log "bench_kernels: skipped ($(elapsed) s used of about 480)"
fi
step_done bench "$t0"

# --- 7. summary ------------------------------------------------------------------------------
steps_json=$(for i in "${!step_names[@]}"; do printf '%s=%s\n' "${step_names[$i]}" "${step_secs[$i]}"; done)
if [ "$mode" = dry ]; then
    log "tests: would run -m gpu in ${TESTS[*]}"
    log "would write: $LOG $JUNIT $TIMINGS"
    log "dry run: OK ($(elapsed) s); nothing was built or run on a GPU"
    exit 0
fi
"$PY" - "$JUNIT" "$BENCH_LOG" "$TIMINGS" "$gpu_name" "$cc" "$rc_tests" "$(elapsed)" "$steps_json" <<'EOF'
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

junit, bench, out, gpu, cc, rc, total, steps = sys.argv[1:9]
counts = {"passed": 0, "failed": 0, "skipped": 0}
failed, skipped, durations = [], [], {}
if Path(junit).is_file():
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        durations[name] = round(float(case.get("time") or 0), 3)
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            failed.append(name)
        elif (skip := case.find("skipped")) is not None:
            counts["skipped"] += 1
            skipped.append(f"{name}: {skip.get('message', '')}")
        else:
            counts["passed"] += 1
bench_lines = Path(bench).read_text().splitlines() if Path(bench).is_file() else []
report = {
    "gpu": gpu, "compute_capability": cc, "tests_exit": int(rc), "seconds": int(total),
    "steps_seconds": {k: int(v) for k, v in (s.split("=") for s in steps.split())},
    "tests": counts, "failed": failed, "skipped": skipped, "test_seconds": durations,
    "bench_kernels": bench_lines,
}
Path(out).write_text(json.dumps(report, indent=2) + "\n")
print("tests: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
for line in failed:
    print(f"FAILED {line}")
for line in skipped:
    print(f"SKIPPED {line}")
EOF
log "gpu_check: done in $(elapsed) s; tests exit $rc_tests; files: $LOG $JUNIT $TIMINGS"
exit $rc_tests
