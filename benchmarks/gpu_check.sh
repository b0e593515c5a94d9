#!/usr/bin/env bash
# gpu_check.sh: what to run on the first machine with a CUDA GPU, in at most 8 minutes.
#
#   bash benchmarks/gpu_check.sh [--dry-run] [LOG]     (from anywhere; LOG defaults to gpu_check.log)
#
# Sections, each under its own time limit (seconds, summed <= 480):
#   env         20   nvidia-smi (10 s more), then Python, torch/CuPy and what they see, portnn's backends
#   tests-cupy  150  the backend-parametrised tests on CuPy:   PORTNN_BACKENDS=cupy       pytest -k cupy tests/
#   tests-torch 120  the same on torch CUDA tensors:           PORTNN_BACKENDS=torch:cuda pytest -k cuda tests/
#   bench       150  benchmarks/bench_gpu.py: MNIST MLP and CNN epoch times, portnn-cupy / portnn-torch-cuda /
#                    torch-cuda, and the 1.2x target (PASS/MISS)
#   ops         30   benchmarks/bench_ops.py (operations and syncs per step), when that file exists
#
# --dry-run runs everything this machine can without a GPU in under 2 minutes: the same test
# sections (their GPU cases skip with the reason, which checks the device option), bench_gpu.py
# (which says why each GPU contender cannot run) and then its CPU stand-ins on 2048 images (`--cpu`),
# and the ops section. Use it to check this script.
#
# The full log goes to LOG; the summary table at the end says each section's status and time,
# and what could not be run and why. Exit status: 1 when a test failed or pytest could not run
# the tests (collection or usage errors), else 0. A benchmark that misses its target, a
# section that runs out of time, a missing GPU or a missing bench_ops.py are reported, not failures.
# MNIST is read from $PORTNN_DATA_DIR (else ../shared/datasets/mnist beside the checkout);
# $PYTHON picks the interpreter (default: python). The checkout itself is imported (PYTHONPATH).
set -u

DRY_RUN=0
LOG=gpu_check.log
for arg in "$@"; do
    case "$arg" in
        --dry-run | --cpu) DRY_RUN=1 ;;
        -h | --help)
            sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "gpu_check.sh: unknown option $arg (use --dry-run, or a log file name)" >&2
            exit 2
            ;;
        *) LOG=$arg ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case "$LOG" in /*) ;; *) LOG="$PWD/$LOG" ;; esac
cd "$ROOT" || exit 2
: >"$LOG" || { echo "gpu_check.sh: cannot write the log $LOG" >&2; exit 2; }
PYTHON=${PYTHON:-python}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

NAMES=() STATUSES=() SECONDS_TAKEN=() NOTES=() COULD_NOT=()
TEST_FAILED=0
START_ALL=$(date +%s)

say() { printf '%s\n' "$*" | tee -a "$LOG"; }

# run_section NAME LIMIT COMMAND...: run COMMAND under `timeout`, its output to the screen, the log
# and $WORK/NAME.out; sets RC and TOOK.
run_section() {
    local name=$1 limit=$2
    shift 2
    say ""
    say "=== $name (limit ${limit}s): $*"
    local t0
    t0=$(date +%s)
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$WORK/$name.out" >>"$LOG"
    RC=${PIPESTATUS[0]}
    cat "$WORK/$name.out"
    TOOK=$(($(date +%s) - t0))
    say "=== $name: exit status $RC after ${TOOK}s"
}

record() { # record NAME STATUS NOTE
    NAMES+=("$1") STATUSES+=("$2") SECONDS_TAKEN+=("$TOOK") NOTES+=("$3")
}

# A test section: pytest's last line says what happened; all skipped means the device is not here.
test_section() {
    local name=$1 limit=$2 selection=$3 keyword=$4
    run_section "$name" "$limit" env PORTNN_BACKENDS="$selection" "$PYTHON" -m pytest -q -rs -p no:cacheprovider \
        --maxfail=25 -k "$keyword" tests/
    local last first_skip
    last=$(grep -E '(passed|failed|skipped|error|deselected|no tests ran)' "$WORK/$name.out" | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
    first_skip=$(grep -m 1 '^SKIPPED' "$WORK/$name.out" | sed 's/^SKIPPED \[[0-9]*\] [^ ]* //')
    case "$RC" in
        0)
            if grep -qE '[0-9]+ skipped' <<<"$last"; then
                COULD_NOT+=("$name: tests skipped, e.g. ${first_skip:-see the log}")
            fi
            if [ "$GPU_SEEN" = 0 ]; then record "$name" SKIP "no GPU: $last"; else record "$name" PASS "$last"; fi
            ;;
        5) record "$name" SKIP "no test selected by -k $keyword"; COULD_NOT+=("$name: pytest selected no test") ;;
        124 | 137)
            record "$name" TIMEOUT "stopped after ${limit}s: $last"
            COULD_NOT+=("$name: did not finish within ${limit}s (see the log for how far it got)")
            ;;
        1) record "$name" FAIL "$last"; TEST_FAILED=1 ;;
        *) record "$name" ERROR "pytest exit status $RC: $last"; TEST_FAILED=1 ;;
    esac
}

say "gpu_check.sh $(date -u '+%Y-%m-%d %H:%M:%S UTC') in $ROOT, log $LOG$([ "$DRY_RUN" = 1 ] && echo ' (dry run: no GPU needed)')"
say "git: $(git -C "$ROOT" log -1 --format='%h %s' 2>/dev/null | cut -c1-100 || echo 'not a git checkout')"

# -- env ---------------------------------------------------------------------------------
ENV_PY='
import platform, sys
print("python", sys.version.split()[0], platform.platform())
try:
    import torch
    cuda = torch.cuda.is_available()
    print("torch", torch.__version__, "CUDA build", torch.version.cuda, "| GPU:", torch.cuda.get_device_name(0) if cuda else "none visible")
except Exception as exc:
    print("torch: not importable:", exc)
try:
    import cupy
    ok = cupy.is_available()
    print("cupy", cupy.__version__, "| GPU:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode() if ok else "none visible")
except Exception as exc:
    print("cupy: not importable:", exc)
from portnn.cli import main
main(["backends"])
'
if command -v nvidia-smi >/dev/null 2>&1; then
    run_section nvidia-smi 10 nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu --format=csv
else
    say "nvidia-smi: not found"
fi
run_section env 20 "$PYTHON" -c "$ENV_PY"
if [ "$RC" = 0 ]; then record env DONE "$(grep -m 1 '^torch' "$WORK/env.out" | cut -c1-70)"; else record env ERROR "exit status $RC"; fi
GPU_SEEN=0
grep -qE '^(torch|cupy) .*GPU: [^n]' "$WORK/env.out" && GPU_SEEN=1
if [ "$GPU_SEEN" = 0 ]; then
    COULD_NOT+=("GPU: neither torch nor CuPy sees a CUDA device here, so every GPU case skips and bench_gpu.py times nothing on a GPU")
fi

# -- the backend-parametrised tests on the GPU --------------------------------------------
test_section tests-cupy 150 cupy cupy
test_section tests-torch 120 torch:cuda cuda

# -- epoch times ---------------------------------------------------------------------------
if [ "$DRY_RUN" = 1 ]; then
    # the GPU contenders (each says why it cannot run), then the same harness with CPU stand-ins
    run_section bench 150 bash -c '"$0" benchmarks/bench_gpu.py && "$0" benchmarks/bench_gpu.py --cpu --limit 2048 \
        --cnn-steps 2 --warmup-steps 1 --repeats 1' "$PYTHON"
else
    run_section bench 150 "$PYTHON" benchmarks/bench_gpu.py
fi
TARGETS=$(grep '^TARGET' "$WORK/bench.out" | sed 's/^TARGET //' | paste -sd ';' -)
while IFS= read -r line; do COULD_NOT+=("bench: ${line#bench_gpu: }"); done < <(grep '^bench_gpu: cannot run' "$WORK/bench.out")
case "$RC" in
    0)
        if [ -z "$TARGETS" ]; then
            record bench SKIP "no CUDA contender can run here"
        else
            record bench DONE "$(grep -c '^TARGET' "$WORK/bench.out") targets judged, see below"
        fi
        ;;
    124 | 137) record bench TIMEOUT "stopped after 150s"; COULD_NOT+=("bench: did not finish within 150s") ;;
    *) record bench ERROR "exit status $RC: $(tail -n 1 "$WORK/bench.out")"; COULD_NOT+=("bench: failed, see the log") ;;
esac

# -- operations and syncs per step ---------------------------------------------------------
if [ -f benchmarks/bench_ops.py ]; then
    run_section ops 30 "$PYTHON" benchmarks/bench_ops.py
    case "$RC" in
        0) record ops DONE "$(tail -n 1 "$WORK/ops.out" | cut -c1-70)" ;;
        124 | 137) record ops TIMEOUT "stopped after 30s"; COULD_NOT+=("ops: did not finish within 30s") ;;
        *) record ops ERROR "exit status $RC"; COULD_NOT+=("ops: bench_ops.py exited with status $RC, see the log") ;;
    esac
else
    TOOK=0
    say ""
    say "=== ops: benchmarks/bench_ops.py is missing (the op-counting tracer is not in this checkout yet)"
    record ops MISSING "benchmarks/bench_ops.py not in this checkout"
    COULD_NOT+=("ops: benchmarks/bench_ops.py is missing, so operations and syncs per step were not counted")
fi

# -- summary ---------------------------------------------------------------------------------
TOTAL=$(($(date +%s) - START_ALL))
say ""
say "=== summary ($([ "$DRY_RUN" = 1 ] && echo 'dry run, ')total ${TOTAL}s; full log: $LOG)"
say "$(printf '%-12s %-8s %6s  %s' section status seconds note)"
for i in "${!NAMES[@]}"; do
    say "$(printf '%-12s %-8s %6s  %s' "${NAMES[$i]}" "${STATUSES[$i]}" "${SECONDS_TAKEN[$i]}" "${NOTES[$i]}")"
done
if [ -n "${TARGETS:-}" ]; then
    say ""
    say "targets (portnn-cupy vs native torch-cuda per epoch, <= 1.2x):"
    while IFS= read -r line; do say "  $line"; done < <(grep '^TARGET' "$WORK/bench.out" | sed 's/^TARGET //')
fi
say ""
if [ "${#COULD_NOT[@]}" -gt 0 ]; then
    say "could not run:"
    for line in "${COULD_NOT[@]}"; do say "  - $line"; done
else
    say "could not run: nothing; every section ran"
fi
if [ "$TEST_FAILED" = 1 ]; then
    say "gpu_check: FAILED (a test section failed; see the log)"
    exit 1
fi
say "gpu_check: no test failed"
exit 0
