#!/usr/bin/env bash
# One call on a lent GPU machine (see docs/training.md, "Measuring on a GPU"): no pip install (the machine has its own
# torch and no network), the data carried as one tarball, the GPU recipe timed alone, then a parallel recipe sweep.
#
#   device run, carry [".gpu"]:  bash bench/gpu_session.sh
#   .gpu/cifar10-jpeg.tar.gz = tar czf of cifar10-jpeg/train (../shared/data); results land in $OUT.
# SWEEP_END_S: no sweep run starts after this many seconds since this script started.
set -u
started=$(date +%s)
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
# The repository's folders become the cifar_edge.* packages through a namespace folder of links (no build step).
site=/tmp/cifar-site
mkdir -p $site/cifar_edge
for package in train export runtime; do ln -sfn "$PWD/$package" "$site/cifar_edge/$package"; done
export PYTHONPATH=$site PYTHONUNBUFFERED=1 CIFAR_EDGE_CACHE=/tmp/cifar-cache
data=/tmp/data/cifar10-jpeg
[ -d $data/train ] || { mkdir -p /tmp/data && tar xzf .gpu/cifar10-jpeg.tar.gz -C /tmp/data; } || exit 1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"

python3 bench/sweep.py bench/plans/gpu_airbench.json --data $data --out "$out/airbench" --runs /tmp/runs/airbench \
    --deadline-s "${AIRBENCH_END_S:-150}" 2>&1 | tee "$out/airbench.log"
# What counts is the exported model: the first GPU-trained run through ONNX and the torch-free runtime (the machine's
# onnxruntime runs it on the CPU), gated on all its validation images.
first_run=$(ls -d /tmp/runs/airbench/*-seed0 2>/dev/null | head -1)
[ -n "$first_run" ] && python3 -m cifar_edge.export.cli "$first_run" --format onnx --verify-images 5000 \
    2>&1 | tee "$out/export.log"
left=$(( ${SWEEP_END_S:-400} - ($(date +%s) - started) ))
if [ $left -gt 30 ]; then
    python3 bench/sweep.py bench/plans/gpu_default_sweep.json --data $data --workers "${SWEEP_WORKERS:-8}" \
        --out "$out/sweep" --runs /tmp/runs/sweep --deadline-s $left 2>&1 | tee "$out/sweep.log"
fi
echo "done in $(( $(date +%s) - started )) s"
