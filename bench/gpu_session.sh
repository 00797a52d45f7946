#!/usr/bin/env bash
# One call on a lent GPU machine (docs/training.md, "On a lent GPU"): no pip install (the machine has its own
# torch and no network), the data carried as one tarball, the GPU recipe timed alone, then a parallel recipe sweep.
#
#   device run, carry [".gpu"]:  bash bench/gpu_session.sh
#   .gpu/cifar10-jpeg.tar.gz = tar czf of cifar10-jpeg/train (../shared/data); results land in $OUT.
# TIMED_PLAN: timed with one worker (default bench/plans/gpu_airbench.json); SWEEP_PLANS: accuracy sweeps with
# SWEEP_WORKERS (8) at once; SWEEP_END_S: no sweep run starts after this many seconds since the script started.
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

# Muon's batched optimizer step against its per-parameter loop (operations and milliseconds per step).
python3 bench/optimizer_step.py --device cuda 2>&1 | tee "$out/timed.log"
timed_plan=${TIMED_PLAN:-bench/plans/gpu_airbench.json}
python3 bench/sweep.py "$timed_plan" --data $data --out "$out/timed" --runs /tmp/runs/timed \
    --deadline-s "${TIMED_END_S:-200}" 2>&1 | tee -a "$out/timed.log"
# What counts is the exported model: the first GPU-trained run through ONNX and the torch-free runtime (the machine's
# onnxruntime runs it on the CPU), gated on all its validation images.
export_run=${EXPORT_RUN:-/tmp/runs/timed/airbench-seed0}
[ -d "$export_run" ] && python3 -m cifar_edge.export.cli "$export_run" --format onnx --verify-images 5000 \
    2>&1 | tee "$out/export.log"
# The issue's accuracy-against-seconds curve of the default and seed recipes, on this device.
timeout 100 python3 bench/recipe.py --data $data --device cuda --out "$out/recipe" 2>&1 | tail -30
# The accuracy sweeps share what is left of SWEEP_END_S equally, in order (their logs stay here: sweep.json has all).
read -r -a plans <<< "${SWEEP_PLANS:-bench/plans/gpu_width_epochs.json}"
for index in "${!plans[@]}"; do
    left=$(( ${SWEEP_END_S:-480} - ($(date +%s) - started) ))
    share=$(( left / (${#plans[@]} - index) ))
    [ $share -gt 30 ] || break
    name=$(basename "${plans[$index]}" .json)
    python3 bench/sweep.py "${plans[$index]}" --data $data --workers "${SWEEP_WORKERS:-8}" --out "$out/$name" \
        --runs "/tmp/runs/$name" --deadline-s $share 2>&1 | tee "/tmp/$name.log"
done
echo "done in $(( $(date +%s) - started )) s"
