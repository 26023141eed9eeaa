#!/usr/bin/env bash
# Paper-profile trials on a CUDA machine in one prepared call.
#
# What the script needs there: a CUDA GPU, Python with torch (and pandas, tqdm), no internet,
# and this repository's working tree with the gzipped datasets staged beside it in the
# gitignored data/ folder. Only metrics come back: checkpoints are removed before the end.
#
#   before:  LTH_DATA_DIR=<folder with MNIST/ and FashionMNIST/> scripts/device_runs.sh stage
#            (copies the gzipped raw files into data/, which then travels with the tree)
#   there:   OUT=<folder that comes back> bash scripts/device_runs.sh go <budget seconds>
#            a CUDA smoke check, then the plan's trials in order into $OUT/runs, each under a
#            timeout of what is left of the budget; a trial cut short stays partial and is not
#            imported. nvidia-smi and the versions go to $OUT/device.txt.
#   after:   .venv/bin/python -m lthlib runs import <returned folder>/runs
#
# The plan (scripts/device_plan.txt, one `python -m lthlib run` argument list per line) lists
# the trials the committed store lacks, most needed first. Records name the GPU they ran on.
# LTH_DEVICE=cpu, PYTHON=<interpreter> and PLAN=<file> rehearse the whole call on a CPU
# (tests/test_device_script.py).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
stage)
  src="${LTH_DATA_DIR:?set LTH_DATA_DIR to the folder holding MNIST/ and FashionMNIST/}"
  for name in MNIST FashionMNIST; do
    mkdir -p "data/$name/raw"
    cp "$src/$name/raw/"*.gz "data/$name/raw/"
  done
  du -sh data
  ;;
go)
  budget="${2:?usage: device_runs.sh go BUDGET_SECONDS}"
  out="${OUT:?OUT must name the folder whose contents come back}"
  export LTH_DATA_DIR="$PWD/data" LTH_CACHE_DIR="/tmp/lthlib-cache" LTH_DEVICE="${LTH_DEVICE:-cuda}"
  py="${PYTHON:-python}"
  start=$(date +%s)
  { nvidia-smi || true; "$py" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')" || true; } > "$out/device.txt" 2>&1
  "$py" -m lthlib run imp --profile smoke --rounds 1 --runs-dir "$out/smoke" --no-progress \
    > "$out/smoke.log" 2>&1 || { echo "CUDA smoke run failed; see smoke.log"; tail -20 "$out/smoke.log"; exit 1; }
  rm -rf "$out/smoke"
  while read -r line; do
    [[ -z "$line" || "$line" == \#* ]] && continue
    left=$(( budget - ($(date +%s) - start) ))
    (( left < 60 )) && { echo "budget spent; stopping before: $line"; break; }
    echo "$(date +%T) [$left s left] $line"
    # shellcheck disable=SC2086  # the plan line is an argument list
    timeout "$left" "$py" -m lthlib run $line --runs-dir "$out/runs" --no-progress \
      >> "$out/runs.log" 2>&1 || echo "  stopped or failed (rc $?); see runs.log"
  done < "${PLAN:-scripts/device_plan.txt}"
  find "$out/runs" -name ckpt -type d -prune -exec rm -rf {} + 2>/dev/null || true
  echo "done in $(( $(date +%s) - start )) s"
  ;;
*)
  echo "usage: $0 stage | go BUDGET_SECONDS" >&2
  exit 2
  ;;
esac
