#!/usr/bin/env bash
# One prepared, self-contained check of the GPU paths on a CUDA machine (no network there):
#   1. builds csrc/ with nvcc for the local GPU's architecture (CMake, CUDA required),
#   2. runs the kernel tests: CUDA kernels against the CPU twin (every size of the parity tests,
#      NV12 included) plus the CPU parity tests, and every other `-m gpu` test file that can run
#      here (TensorRT ones skip with a clear line: TensorRT is not pip-installable),
#   3. runs one GRPO step of the tiny model with bf16 compute on CUDA (tests marked gpu),
#   4. times the kernels against the CPU twin, numpy and torch (benchmarks/bench_kernels.py),
#   5. prints a short summary (also written to $OUT/gpu_check_summary.txt).
#
# It installs nothing from the network: Python packages the machine lacks come as wheels from
# --wheels DIR (default .whl/gpu), made beforehand on an online machine with --fetch-wheels.
# The project itself is made importable without a build (a folder of symlinks plus a generated
# dist-info carrying the CLI's entry points on PYTHONPATH), so no build backend runs there.
#
#   scripts/gpu_check.sh --fetch-wheels   # online machine: wheels for the GPU host's Python
#   scripts/gpu_check.sh                  # GPU machine: the check (< 8 minutes)
#   scripts/gpu_check.sh --dry-run        # any machine: checks this script's own logic
#
# Options: --wheels DIR, --out DIR (default $OUT or ./gpu-check), --python PY (default python3),
# --gpu-python-version X.Y (for --fetch-wheels; default 3.12, the lent H200 machine's Python).
# Environment for --dry-run: GPU_CHECK_FAKE_GPU="NAME, MAJOR.MINOR" (default "NVIDIA H200, 9.0").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
start=$(date +%s)

mode=check
WHEELS=.whl/gpu
OUTDIR="${OUT:-$ROOT/gpu-check}"
PY=python3
GPU_PYVER=3.12
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) mode=dry ;;
        --fetch-wheels) mode=fetch ;;
        --wheels) WHEELS=$2; shift ;;
        --out) OUTDIR=$2; shift ;;
        --python) PY=$2; shift ;;
        --gpu-python-version) GPU_PYVER=$2; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# Python modules the check imports -> the wheel (pinned like pyproject) that provides them.
# Order matters for --no-deps installs: dependencies first.
NEEDED=(
    "omegaconf:antlr4-python3-runtime==4.9.3 omegaconf==2.3.1"
    "hydra:hydra-core==1.3.8"
    "iopath:iopath==0.1.10"
    "sam2:sam2==1.1.0"
    "dill:dill==0.4.1"
    "multiprocess:multiprocess==0.70.19"
    "datasets:datasets==5.2.0"
    "trl:trl==1.16.0"
    "hypothesis:hypothesis==6.170.17"
    "pytest:pytest==9.2.0"
)

log() { printf '== %s\n' "$*"; }
elapsed() { echo $(( $(date +%s) - start )); }

if [ "$mode" = fetch ]; then
    mkdir -p "$WHEELS"
    # multiprocess and hypothesis ship wheels per Python version: ask for the GPU host's; the
    # rest are pure Python: `pip wheel` takes the wheel or builds one from the sdist
    # (antlr4-python3-runtime 4.9.3 and sam2 are sdist-only; sam2 without its CUDA extension).
    pure=()
    versioned=()
    for entry in "${NEEDED[@]}"; do
        for req in ${entry#*:}; do
            case "${req%%==*}" in
                multiprocess | hypothesis) versioned+=("$req") ;;
                *) pure+=("$req") ;;
            esac
        done
    done
    log "wheels for CPython $GPU_PYVER (x86_64) into $WHEELS"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$GPU_PYVER" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d "$WHEELS" "${versioned[@]}"
    SAM2_BUILD_CUDA=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" "${pure[@]}"
    du -sh "$WHEELS"
    exit 0
fi

mkdir -p "$OUTDIR"
SUMMARY="$OUTDIR/gpu_check_summary.txt"
: >"$SUMMARY"
say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
run() {  # run a command, or print it under --dry-run
    if [ "$mode" = dry ]; then printf 'would run: %s\n' "$*"; else "$@"; fi
}

# --- 1. the GPU ------------------------------------------------------------------------------
if [ "$mode" = dry ]; then
    gpu_line="${GPU_CHECK_FAKE_GPU:-NVIDIA H200, 9.0}"
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
say "GPU: $gpu_name, compute capability $cc -> CMAKE_CUDA_ARCHITECTURES=$ARCH"
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ "$mode" != dry ] && [ ! -x "$nvcc_bin" ]; then
    echo "gpu_check: nvcc not found (PATH or /usr/local/cuda/bin)" >&2
    exit 1
fi

# --- 2. Python packages this machine lacks ---------------------------------------------------
missing=()
for entry in "${NEEDED[@]}"; do
    module=${entry%%:*}
    "$PY" -c "import $module" >/dev/null 2>&1 || missing+=(${entry#*:})
done
if [ ${#missing[@]} -eq 0 ]; then
    say "python: $("$PY" -c 'import sys; print(sys.version.split()[0])'), nothing to install"
else
    absent=()
    for req in "${missing[@]}"; do
        name=${req%%==*}
        ls "$WHEELS"/"${name//-/_}"-"${req#*==}"-*.whl >/dev/null 2>&1 ||
            ls "$WHEELS"/"$name"-"${req#*==}"-*.whl >/dev/null 2>&1 || absent+=("$req")
    done
    say "python: installing ${missing[*]} from $WHEELS"
    if [ ${#absent[@]} -gt 0 ]; then
        say "gpu_check: wheels missing from $WHEELS: ${absent[*]} (run --fetch-wheels online)"
        [ "$mode" = dry ] || exit 1
    fi
    run "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "${missing[@]}"
fi

# --- 3. the project on PYTHONPATH, with its entry points --------------------------------------
SITE="$OUTDIR/site"
rm -rf "$SITE" && mkdir -p "$SITE"
ln -s "$ROOT/segzero_edge" "$SITE/segzero_edge"
ln -s "$ROOT/export" "$SITE/segzero_export"
ln -s "$ROOT/train" "$SITE/segzero_train"
ln -s "$ROOT/benchmarks" "$SITE/segzero_bench"
"$PY" - "$ROOT/pyproject.toml" "$SITE" <<'EOF'
import sys, tomllib
from pathlib import Path

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
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
commands=$("$PY" -c "from segzero_edge.commands import registered; print(' '.join(sorted(registered())))")
say "project: importable from $SITE (CLI commands: $commands)"

# --- 4. csrc/ with nvcc ----------------------------------------------------------------------
BUILD="$OUTDIR/build"
run cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSEGZERO_CUDA=ON \
    -DSEGZERO_REQUIRE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin" \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DSEGZERO_COPY_TO_PACKAGE=OFF
run cmake --build "$BUILD" -j"$(nproc)"
export SEGZERO_NATIVE_LIB="$BUILD/libsegzero_kernels.so"
if [ "$mode" != dry ]; then
    "$PY" -c "from segzero_edge import native; ok, why = native.available(); \
assert ok and native.cuda_available(), why; print('native:', why)" | tee -a "$SUMMARY"
fi
say "build: csrc/ for sm_$ARCH ($(elapsed) s so far)"

# --- 5. tests --------------------------------------------------------------------------------
trt=$("$PY" -c "from segzero_edge.device import tensorrt_version as v; print(v()[0] or '')")
if [ -n "$trt" ]; then
    say "TensorRT: $trt present: the engine tests run"
else
    say "TensorRT: not installed on this machine (it is not on pip): TensorRT tests are skipped"
fi
TESTS=(tests/test_kernels_pixels.py tests/test_kernels_build.py)
for f in tests/test_*gpu*.py; do [ -f "$f" ] && TESTS+=("$f"); done
JUNIT="$OUTDIR/gpu-tests.xml"
set +e
run timeout 360 "$PY" -m pytest -q -p no:cacheprovider -rs --junitxml="$JUNIT" "${TESTS[@]}"
rc_tests=$?
set -e
[ "$mode" = dry ] && say "tests: would run ${TESTS[*]}"

# --- 6. kernel timings -----------------------------------------------------------------------
BENCH_LOG="$OUTDIR/bench_kernels.txt"
if [ "$mode" = dry ]; then
    run "$PY" benchmarks/bench_kernels.py --repeats 7
else
    set +e
    timeout 120 "$PY" benchmarks/bench_kernels.py --repeats 7 >"$BENCH_LOG" 2>&1
    rc_bench=$?
    set -e
    [ $rc_bench -eq 0 ] || say "bench_kernels: exit $rc_bench (see $BENCH_LOG)"
fi

# --- 7. summary ------------------------------------------------------------------------------
if [ "$mode" = dry ]; then
    say "dry run: OK ($(elapsed) s); nothing was built or run on a GPU"
    exit 0
fi
"$PY" - "$JUNIT" "$BENCH_LOG" <<'EOF' | tee -a "$SUMMARY"
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

root = ET.parse(sys.argv[1]).getroot()
cases = root.iter("testcase")
counts = {"passed": 0, "failed": 0, "skipped": 0}
failed, gpu = [], []
for case in cases:
    name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
    if case.find("failure") is not None or case.find("error") is not None:
        counts["failed"] += 1
        failed.append(name)
    elif case.find("skipped") is not None:
        counts["skipped"] += 1
    else:
        counts["passed"] += 1
        if "cuda" in name or "gpu" in name:
            gpu.append(name)
print("tests: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
print(f"GPU tests passed: {len(gpu)}")
for name in failed:
    print(f"FAILED {name}")
bench = Path(sys.argv[2])
if bench.is_file():
    print("kernel timings (bench_kernels.py, median ms):")
    for line in bench.read_text().splitlines():
        print("  " + line)
EOF
say "gpu_check: done in $(elapsed) s; tests exit $rc_tests"
exit $rc_tests
