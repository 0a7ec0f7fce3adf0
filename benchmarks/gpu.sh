#!/usr/bin/env bash
# lrbench's GPU work in stages, each one device command well inside its 10-minute limit, all three
# inside about 12 minutes of GPU time (a window is about 15 with the machine's start:
# ../shared/device/README.md).
#
#   benchmarks/gpu.sh [--dry-run] STAGE COMMIT     STAGE: a, b, c, or all
#   benchmarks/gpu.sh prepare                      (here) .gpu/head.bundle: the commit, for asv
#   benchmarks/gpu.sh merge ARCHIVE...             (here) unpack into results/, lrbench report
#
#   a  correctness  machine stamp, ptxas report, the GPU tests (the emulation's cases included),
#                   compute-sanitizer memcheck and racecheck on one small case per kernel
#   b  bandwidth    copy and scan bandwidth on >= 1 GiB buffers, the scan grid: asv, cuda only
#   c  paper        Table 1, Table 2, the heatmap, the anchor libraries' shape: asv, cuda only
#
# On the device, after `prepare`:  run(carry=[".whl", ".gpu"], 'bash benchmarks/gpu.sh a <commit>')
# then b, then c. Every step ends by re-packing $OUT/lrbench-gpu-<stage>.tgz (results/asv/<machine>/
# and results/gpu/<machine>/<stage>/ with the logs), so a stage stopped at its limit returns what
# it finished; a step that would overrun the stage's plan is skipped, and says so. asv results
# carry COMMIT, the tree's real commit (the device gets the tree without .git: `prepare` bundles
# it), and merge beside the CPU results, so `asv publish` and `lrbench report` show both.
# --dry-run runs every stage on a CPU machine: GPU steps are skipped with a message, asv steps run
# with --quick --dry-run (every CUDA parameter skips), the archive is packed and listed, and the
# GPU time each stage plans is printed. CI runs it (make perf).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
# Seconds of GPU time each stage plans; the stage stops starting steps when its plan is spent.
declare -A PLAN=([a]=240 [b]=270 [c]=190)
# Wheels the device image lacks (../shared/device/fetch-wheels.sh downloads them into .whl/):
# required for the asv stages; accelerated-scan and fla-core only for the anchors (n/a without).
WHEELS="asv asv_runner json5 pympler importlib_metadata virtualenv distlib platformdirs"

dry=0
if [ "${1:-}" = --dry-run ]; then dry=1; shift; fi
mode=${1:?usage: gpu.sh [--dry-run] a|b|c|all COMMIT | prepare | merge ARCHIVE...}

if [ "$mode" = prepare ]; then
    mkdir -p .gpu
    git bundle create .gpu/head.bundle HEAD 2>/dev/null && git rev-parse HEAD > .gpu/commit
    echo "bundled $(cat .gpu/commit): carry .gpu (and .whl) to the device"
    exit 0
fi
if [ "$mode" = merge ]; then
    shift
    for f in "$@"; do
        echo "== $f"
        tar xzvf "$f" -C "$ROOT" results | sed 's/^/   /'
    done
    "$PY" -m lrbench.cli report
    exit $?
fi

commit=${2:?usage: gpu.sh [--dry-run] a|b|c|all COMMIT}
OUT=${OUT:-/tmp/lrbench-out}
mkdir -p "$OUT"
case "$mode" in a|b|c) stages=$mode ;; all) stages="a b c" ;; *) echo "unknown stage $mode" >&2; exit 2 ;; esac

# The tree's Python path: wheels carried in .whl/ go to a temporary site folder.
export PYTHONPATH=$ROOT
if compgen -G ".whl/*.whl" > /dev/null; then
    site=$(mktemp -d)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    export PYTHONPATH="$site:$ROOT"
fi
export ASV_PYTHONPATH=$PYTHONPATH
# CuPy and compute-sanitizer find the toolkit through CUDA_PATH.
if [ -z "${CUDA_PATH:-}" ]; then
    if command -v nvcc > /dev/null; then CUDA_PATH=$(dirname "$(dirname "$(command -v nvcc)")")
    elif [ -d /usr/local/cuda ]; then CUDA_PATH=/usr/local/cuda; fi
fi
export CUDA_PATH=${CUDA_PATH:-}
SANITIZER=$(command -v compute-sanitizer || echo "${CUDA_PATH:+$CUDA_PATH/bin/compute-sanitizer}")

if [ $dry = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "no CUDA device: run with --dry-run on a CPU machine" >&2
    exit 2
fi
machine=$("$PY" -m lrbench.cli machine)
total=0
for s in $stages; do total=$((total + PLAN[$s])); done
echo "gpu.sh: stages '$stages' plan ${total} s of GPU time (a ${PLAN[a]} s, b ${PLAN[b]} s, c ${PLAN[c]} s); machine $machine; commit $commit"

failed=0
STAGE_DIR=""   # results/gpu/<machine>/<stage> inside $OUT/pack-<stage>
ARCHIVE=""
pack() {
    local items=(-C "$OUT/pack-$stage" results)
    [ -d "results/asv/$machine" ] && items+=(-C "$ROOT" "results/asv/$machine")
    [ -f results/asv/benchmarks.json ] && items+=(-C "$ROOT" results/asv/benchmarks.json)
    tar czf "$ARCHIVE.tmp" "${items[@]}" && mv "$ARCHIVE.tmp" "$ARCHIVE"
}

# step NAME SECONDS gpu|cpu CMD...: run CMD under a timeout if the stage's plan has room.
step() {
    local name=$1 secs=$2 kind=$3 rc t0
    shift 3
    local log="$STAGE_DIR/$name.txt"
    if [ "$kind" = gpu ] && [ $dry = 1 ]; then
        echo "dry run: $name skipped, it needs a GPU: $*" | tee "$log"
        echo -e "$name\tskipped (dry run)\t0" >> "$STAGE_DIR/steps.tsv"
        pack
        return
    fi
    if (( $(date +%s) + secs > deadline )); then
        echo "$name skipped: it plans $secs s, stage $stage has $((deadline - $(date +%s))) s left" | tee "$log"
        echo -e "$name\tskipped (stage time)\t0" >> "$STAGE_DIR/steps.tsv"
        pack
        return
    fi
    t0=$(date +%s)
    timeout --kill-after=10 "$secs" "$@" > "$log" 2>&1
    rc=$?
    [ $rc = 0 ] || failed=$((failed + 1))
    echo -e "$name\trc=$rc\t$(( $(date +%s) - t0 ))" >> "$STAGE_DIR/steps.tsv"
    echo "$name: rc=$rc in $(( $(date +%s) - t0 )) s (log $name.txt)"
    pack
}

# The commit must exist for asv to stamp results with it: .git here, or the bundle from `prepare`.
git_for_asv() {
    if [ ! -d .git ] && [ ! -f .git ]; then
        [ -f .gpu/head.bundle ] || { echo "no .git and no .gpu/head.bundle: run 'benchmarks/gpu.sh prepare' and carry .gpu" >&2; return 1; }
        git init -q && git fetch -q .gpu/head.bundle HEAD && git update-ref refs/heads/main FETCH_HEAD \
            && git symbolic-ref HEAD refs/heads/main && git reset -q
    fi
    local head
    head=$(git rev-parse HEAD)
    case "$head" in "$commit"*) ;; *) echo "HEAD is $head, not $commit" >&2; return 1 ;; esac
    for w in $WHEELS; do
        "$PY" -c "import $w" 2>/dev/null || { echo "missing wheel: $w (../shared/device/fetch-wheels.sh)" >&2; return 1; }
    done
    "$PY" -m asv machine --yes --machine "$machine" --os "$(uname -sr)" --arch "$(uname -m)" \
        --cpu "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" --num_cpu "$(nproc)" \
        --ram "$(free -b | awk '/Mem/{print $2}')" > /dev/null
}

# asv_step NAME SECONDS REGEX: the selected benchmarks, CUDA parameters only, few samples.
asv_step() {
    local name=$1 secs=$2 regex=$3
    local args=(run -E "existing:$(command -v "$PY")" --show-stderr --machine "$machine"
                --set-commit-hash "$(git rev-parse HEAD)" -b "$regex"
                -a rounds=1 -a repeat=5 -a warmup_time=0.05)
    if [ $dry = 1 ]; then args+=(--quick --dry-run --launch-method forkserver)
    else args+=(--launch-method spawn); fi
    step "$name" "$secs" cpu env LRBENCH_BENCH_DEVICES=cuda "$PY" -m asv "${args[@]}"
    # One history per machine: the results' environment renamed from this interpreter's path to
    # the name asv run/continuous use (lrbench/asv_results.py; docs/asv.md).
    "$PY" -m lrbench.asv_results normalise --machine "$machine" >> "$STAGE_DIR/$name.txt" 2>&1 \
        || echo "$name: normalise failed (results keep asv's existing-* name; see $name.txt)"
    pack
}

for stage in $stages; do
    start=$(date +%s)
    deadline=$((start + PLAN[$stage]))
    STAGE_DIR="$OUT/pack-$stage/results/gpu/$machine/$stage"
    ARCHIVE="$OUT/lrbench-gpu-$stage.tgz"
    rm -rf "$OUT/pack-$stage"
    mkdir -p "$STAGE_DIR"
    echo -e "commit\t$commit\nstage\t$stage\nplan_s\t${PLAN[$stage]}\ndry_run\t$dry" > "$STAGE_DIR/stage.tsv"
    echo "== stage $stage: plans ${PLAN[$stage]} s of GPU time"
    case $stage in
    a)
        step nvidia-smi 20 gpu nvidia-smi
        step machine 30 cpu "$PY" -m lrbench.cli info
        step ptxas 60 cpu "$PY" -m lrbench.cli kernels --arch sm_90
        step gpu-tests 150 gpu "$PY" -m pytest -m gpu -q -p no:cacheprovider -rs --durations=15 \
            tests/test_gpu.py
        # One small case per kernel, each tensor its own allocation so memcheck sees its bounds.
        step memcheck 40 gpu env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SANITIZER" --tool memcheck \
            --error-exitcode 1 "$PY" tests/emulation/cases.py --gpu
        step racecheck 40 gpu env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SANITIZER" --tool racecheck \
            --error-exitcode 1 "$PY" tests/emulation/cases.py --gpu
        ;;
    b)
        git_for_asv > "$STAGE_DIR/asv-setup.txt" 2>&1 || { cat "$STAGE_DIR/asv-setup.txt"; failed=$((failed + 1)); pack; continue; }
        asv_step bandwidth 100 '^bench_bandwidth\.'
        asv_step scan-forward 80 '^bench_scan\.ScanForward\.'
        asv_step scan-forward-backward 80 '^bench_scan\.ScanForwardBackward\.'
        ;;
    c)
        git_for_asv > "$STAGE_DIR/asv-setup.txt" 2>&1 || { cat "$STAGE_DIR/asv-setup.txt"; failed=$((failed + 1)); pack; continue; }
        asv_step table1 50 '^bench_paper\.Table1\.'
        asv_step anchors 50 '^bench_compare\.AnchorShape\.'
        asv_step table2 50 '^bench_models\.Table2\.'
        asv_step heatmap 35 '^bench_models\.Heatmap\.'
        ;;
    esac
    pack
    echo "== stage $stage: $(( $(date +%s) - start )) s of ${PLAN[$stage]} planned; $ARCHIVE:"
    tar tzf "$ARCHIVE" | sed 's/^/   /'
done
echo "gpu.sh: $failed step(s) failed"
exit $(( failed > 0 ))
