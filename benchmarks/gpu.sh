#!/usr/bin/env bash
# All of lrbench's GPU work in one call on the device machine (../shared/device/README.md):
#   run --carry .whl -- 'bash benchmarks/gpu.sh <commit>'
# nvidia-smi and the machine stamp; the ptxas report; the GPU tests; the asv suite (spawn, the
# device's python3); charts and tables; everything packed into $OUT/results.tgz.
# BENCH (an asv -b regex) narrows the suite; QUICK=1 adds --quick.
set -uo pipefail
cd "$(dirname "$0")/.."
commit=${1:?usage: gpu.sh <git commit of this tree>}
OUT=${OUT:-/tmp/lrbench-out}
mkdir -p "$OUT/log"
export PYTHONPATH=$PWD
if compgen -G ".whl/*.whl" > /dev/null; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    export PYTHONPATH="$site:$PWD"
fi
export ASV_PYTHONPATH=$PYTHONPATH

nvidia-smi > "$OUT/log/nvidia-smi.txt" 2>&1
python3 -m lrbench.cli info > "$OUT/log/info.json" 2>&1
python3 -m lrbench.cli kernels > "$OUT/log/ptxas.txt" 2>&1
python3 -m pytest -m gpu -q -p no:cacheprovider -rs tests/test_gpu.py > "$OUT/log/gpu-tests.txt" 2>&1
echo "gpu tests rc=$?" >> "$OUT/log/gpu-tests.txt"

# asv needs a git repository to stamp results; the device gets the tree without .git.
if [ ! -d .git ]; then
    git init -q && git add -A && git -c user.name=lrbench -c user.email=lrbench@localhost commit -qm "$commit"
fi
machine=$(python3 -m lrbench.cli machine)
python3 -m asv machine --yes --machine "$machine" --os "$(uname -sr)" --arch "$(uname -m)" \
    --cpu "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" --num_cpu "$(nproc)" \
    --ram "$(free -b | awk '/Mem/{print $2}')" > /dev/null
python3 -m asv run -E "existing:$(command -v python3)" --launch-method spawn --show-stderr \
    ${QUICK:+--quick} -b "${BENCH:-.}" --set-commit-hash "$(git rev-parse HEAD)" \
    --machine "$machine" > "$OUT/log/asv.txt" 2>&1
echo "asv rc=$? (source commit $commit)" >> "$OUT/log/asv.txt"
python3 -m lrbench.cli report > "$OUT/log/report.txt" 2>&1
tar czf "$OUT/results.tgz" results/ -C "$OUT" log
