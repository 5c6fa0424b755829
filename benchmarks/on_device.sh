#!/usr/bin/env bash
# Cells of benchmarks/reproduce.py on a lent GPU machine (the `device` tool). Its image has torch but not Optuna,
# ART or tomli-w, and nothing can be fetched there, so the wheels travel in .whl/, the data sets in .gpudata/
# (laid out as ../shared/datasets) and runs to reuse in .gpudata/runs (copied into ../repro-runs); both folders
# are ignored by git. What comes back: $OUT/docs.tgz (finished cells under docs/reproduction/), $OUT/runs.tgz
# (the runs' small files, no checkpoints) and one log per group.
# Usage there: bash benchmarks/on_device.sh SECONDS GROUP [GROUP ...]
#   a GROUP is comma-separated cells run one after the other; groups run side by side (small models leave most
#   of the card idle, so a few processes share it well); every cell stops after SECONDS and results are packed.
set -u
budget=$1; shift
start=$SECONDS
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
mkdir -p ../shared/datasets ../repro-runs
for data in .gpudata/*; do [ "$data" = .gpudata/runs ] || ln -sfn "$PWD/$data" "../shared/datasets/${data#.gpudata/}"; done
[ -d .gpudata/runs ] && cp -r .gpudata/runs/. ../repro-runs/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for group in "$@"; do
  ( for cell in ${group//,/ }; do
      timeout "$((budget - (SECONDS - start)))" python3 benchmarks/reproduce.py --device cuda --threads 3 --cells "$cell"
    done ) > "$OUT/${group//,/+}.log" 2>&1 &
done
wait
tar czf "$OUT/docs.tgz" docs/reproduction
tar czf "$OUT/runs.tgz" --exclude='*.pt' -C .. repro-runs
echo "packed after $((SECONDS - start)) s"
