#!/usr/bin/env bash
# Everything this project does on an NVIDIA GPU, checked and timed in one go
# (estimated 5-8 minutes on an H100-class GPU; not yet measured), then one summary:
#
#     bash benchmarks/gpu_check.sh            # from the repository root, deps installed
#
# Run it on any machine with a GPU before trusting a CUDA result of this project
# (new GPU, new torch, a change to ops/csrc/cuda): it builds the CUDA kernels,
# runs the CUDA tests, times the operators and the detector against
# torchvision's, times the deterministic backward, and trains a few steps with
# trainer=gpu in float16 mixed precision (16-mixed: a diverged run fails the step;
# the CUDA tests check that autocast keeps box geometry in float32). Logs go to
# $GPU_CHECK_OUT (default ./gpu_check); the summary is printed and written there
# as summary.txt. Exit status: the number of failed
# steps. Needs the project importable (pip install -e ".[test]"); a step whose
# tools are missing (e.g. no hydra-core for training) fails with its log.
set -u
cd "$(dirname "$0")/.."
OUT=${GPU_CHECK_OUT:-gpu_check}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
FAILED=0
PY=${PYTHON:-python}

# step NAME SECONDS COMMAND...: runs it under a time limit, logs to $OUT/NAME.log
step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local status="ok"
  if [ $rc -ne 0 ]; then
    status="FAILED (exit $rc$([ $rc -eq 124 ] && echo ", over ${limit}s"); see $OUT/$name.log)"
    FAILED=$((FAILED + 1))
  fi
  printf '%-22s %4ds  %s\n' "$name" $((SECONDS - start)) "$status" | tee -a "$SUMMARY"
}

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA GPU here; nothing to check" | tee -a "$SUMMARY"
  exit 1
fi
$PY -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, '|',
torch.cuda.get_device_name(0))" | tee -a "$SUMMARY"

step build 300 $PY -c "
import torch, ops
assert ops.load(), 'the CUDA kernels were not built (see the log: CUDA toolkit? ROI_OPS_CUDA?)'
x = torch.rand(1, 4, 16, 16, device='cuda')
r = torch.tensor([[0.0, 1, 1, 9, 9]], device='cuda')
print(ops.roi_align(x, r, 7, 1.0).sum().item())"
step pytest_cuda 300 $PY -m pytest -m cuda -q -p no:cacheprovider tests
step bench_ops 180 $PY benchmarks/bench_ops.py --device cuda
step bench_deterministic 120 $PY benchmarks/bench_deterministic_backward.py --device cuda
step bench_detector 300 $PY benchmarks/bench_detector.py --device cuda --size 800 \
  --variants ours ours_cl torchvision_cl
step train_gpu_16mixed 300 $PY -m detector.cli.train trainer=gpu trainer.precision=16-mixed \
  trainer.max_steps=60 \
  trainer.max_epochs=1 trainer.check_val_every_n_epoch=1 data.num_train=240 data.num_val=16 \
  data.num_test=16 "paths.log_dir=$OUT/train" "hydra.run.dir=$OUT/train/run"

echo "--- tables" | tee -a "$SUMMARY"
for name in bench_ops bench_deterministic bench_detector; do
  [ -f "$OUT/$name.log" ] && grep -E '^\||threads|device|boxes' "$OUT/$name.log" | tee -a "$SUMMARY"
done
grep -E "passed|failed|error" "$OUT/pytest_cuda.log" | tail -1 | tee -a "$SUMMARY"
if [ -f "$OUT/train/run/results.json" ]; then
  $PY -c "import json; m = json.load(open('$OUT/train/run/results.json'))
print('train_gpu_16mixed test metrics:', {k: round(v, 3) for k, v in m['metrics'].items()
      if k.endswith(('bbox_AP', 'segm_AP'))}, 'wall', m['wall_time_s'], 's')" | tee -a "$SUMMARY"
fi
echo "gpu_check: $FAILED step(s) failed; logs in $OUT" | tee -a "$SUMMARY"
exit $FAILED
