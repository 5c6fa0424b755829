#!/usr/bin/env bash
# Cells of benchmarks/reproduce.py on a lent GPU machine (the `device` tool). Its image has torch but not Optuna,
# ART or tomli-w, and nothing can be fetched there, so the wheels travel in .whl/, the data sets in .gpudata/
# (laid out as ../shared/datasets) and runs to reuse in .gpudata/runs (copied into ../repro-runs); both folders
# are ignored by git. What comes back (the tool returns at most 8 files of 16 MiB, 64 MiB in all): $OUT/docs.tgz
# (finished cells under docs/reproduction/), $OUT/logs.tgz (one log per group), $OUT/runs.tgz (every run's small
# files, no checkpoints: to read, not to reuse) and $OUT/reuse-N.tgz (whole finished runs but their state.pt,
# as many as fit): unpack those into ../repro-runs here and the CPU evaluates them without training again.
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
mkdir -p logs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for group in "$@"; do
  ( for cell in ${group//,/ }; do
      timeout "$((budget - (SECONDS - start)))" python3 benchmarks/reproduce.py --device cuda --threads 3 --cells "$cell"
    done ) > "logs/${group//,/+}.log" 2>&1 &
done
wait
tar czf "$OUT/logs.tgz" logs
tar czf "$OUT/docs.tgz" docs/reproduction
tar czf "$OUT/runs.tgz" --exclude='*.pt' -C .. repro-runs
# Finished runs (summary.json and best.pt) trained here, not those carried in, in the order they finished
# (a population comes back before the runs that were built on it), 15 MiB a file, in the four files left.
carried=$PWD/.gpudata/runs; part=0; size=0; list=()
for run in $(cd .. && for d in repro-runs/*/; do d=${d%/}; [ -f "$d/summary.json" ] && [ -f "$d/best.pt" ] && \
             [ ! -e "$carried/${d#repro-runs/}" ] && echo "$(stat -c %Y "$d/summary.json") $d"; done | \
             sort -n | cut -d' ' -f2); do
  kb=$(du -sk --exclude=state.pt "../$run" | cut -f1)
  if (( size + kb > 15 * 1024 )) && (( ${#list[@]} )); then
    tar czf "$OUT/reuse-$part.tgz" --exclude=state.pt -C .. "${list[@]}"; part=$((part + 1)); size=0; list=()
  fi
  (( part < 4 )) || break
  (( kb <= 15 * 1024 )) && { list+=("$run"); size=$((size + kb)); }
done
(( ${#list[@]} && part < 4 )) && tar czf "$OUT/reuse-$part.tgz" --exclude=state.pt -C .. "${list[@]}"
echo "packed after $((SECONDS - start)) s"
