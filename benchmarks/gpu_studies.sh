#!/usr/bin/env bash
# The real-photo studies that a 2-core CPU cannot afford in one session, run on a lent GPU:
#
#     bash benchmarks/gpu_studies.sh [--dry-run] [STUDY ...] [-- OVERRIDE ...]
#
# STUDY is an experiment config (default: real_roi_ops_fpn real_augment). Each study is the
# usual sweep, `rcnn-train -m experiment=STUDY`, with trainer=gpu (float16 autocast; the ROI
# operators run in float32) and hydra/launcher=local_parallel, STUDY_JOBS runs at a time on the
# one GPU (default 8; each gets cores / jobs CPU threads); OVERRIDEs are added to every sweep
# (e.g. -- seed=2 to run one seed; STUDY_TRAINER=cpu runs on the CPU instead). A run's folder is
# named by its overrides, trainer=gpu included: GPU runs are other runs than the CPU runs of the
# same study. Runs archived under docs/ablation/STUDY/runs/STUDY (results.json) whose folder the
# sweep names again are finished and not run again, so a study cut short by the time limit
# continues next time (the GPU runs, from their archive or their folder).
#
# Data: the coins and galaxies are read from STUDY_DATA_DIR (default ./data); the machine needs
# scikit-image to write them, or carries them (cp -r <paths.data_dir>/{coins,galaxies}-v1 data/
# here first: 7 MB, ./data is ignored by git). Runs go to STUDY_LOG_DIR (default
# outputs/gpu_studies); after each study, however it ended, its finished runs' results.json and
# the sweep's log are packed into $OUT/STUDY.tgz (./STUDY.tgz without $OUT), laid out as the archive:
#     tar xzf STUDY.tgz -C docs/ablation/STUDY/runs    (then rcnn-report as docs/ablation.md says)
# The time limit is STUDY_BUDGET seconds for all studies (default 480): a sweep still running then
# is stopped (its finished runs are packed). --dry-run (any machine): composes each study's first
# run with trainer=gpu and prints the sweep command, nothing trained. Needs the project
# importable, as benchmarks/gpu_check.sh (benchmarks/README.md: "On a lent GPU machine").
set -u
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = --dry-run ]; then DRY=1; shift; fi
STUDIES=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do STUDIES+=("$1"); shift; done
[ $# -gt 0 ] && shift
EXTRA=("$@")
[ ${#STUDIES[@]} -eq 0 ] && STUDIES=(real_roi_ops_fpn real_augment)
PY=${PYTHON:-python}
LOG=${STUDY_LOG_DIR:-outputs/gpu_studies}
DATA=${STUDY_DATA_DIR:-data}
JOBS=${STUDY_JOBS:-8}
TRAINER=${STUDY_TRAINER:-gpu}
BUDGET=${STUDY_BUDGET:-480}
# The packaged configs are a link that git does not carry (a fresh copy lacks it).
[ -e detector/configs ] || ln -s ../configs detector/configs
FAILED=0

pack() {  # STUDY: its finished runs' results.json (STUDY/RUN/results.json) and its sweep's log
  local study=$1 pack=${OUT:-.}/$1.tgz files
  files=$(cd "$LOG/ablation" && find "$study" -mindepth 2 -maxdepth 2 -name results.json)
  (cd "$LOG/ablation" && tar czf - $files "$study.log") > "$pack"
  echo "$study: packed $(echo "$files" | grep -c results.json) finished runs and the log into $pack"
}

for study in "${STUDIES[@]}"; do
  sweep="$LOG/ablation/$study"
  args=(-m "experiment=$study" "trainer=$TRAINER" hydra/launcher=local_parallel
        "hydra.launcher.n_jobs=$JOBS" "paths.log_dir=$LOG" "paths.data_dir=$DATA" "${EXTRA[@]}")
  echo "== $study: $PY -m detector.cli.train ${args[*]}"
  if [ $DRY -eq 1 ]; then
    $PY -m detector.cli.train "experiment=$study" "trainer=$TRAINER" "paths.data_dir=$DATA" \
      "${EXTRA[@]}" --cfg job \
      > /dev/null || { echo "$study: the config does not compose"; FAILED=$((FAILED + 1)); }
    continue
  fi
  archive="docs/ablation/$study/runs/$study"
  mkdir -p "$sweep"
  if [ -d "$archive" ]; then  # finished runs: the sweep skips a folder holding results.json
    cp -rn "$archive/." "$sweep/"
  fi
  left=$((BUDGET - SECONDS))
  if [ $left -lt 60 ]; then echo "$study: skipped, under 60 s of STUDY_BUDGET left"; continue; fi
  start=$SECONDS
  timeout "$left" $PY -m detector.cli.train "${args[@]}" > "$sweep.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && FAILED=$((FAILED + 1))
  echo "$study: exit $rc after $((SECONDS - start)) s$([ $rc -eq 124 ] && echo ' (time limit)')," \
    "$(find "$sweep" -mindepth 2 -maxdepth 2 -name results.json | wc -l) runs finished;" \
    "log $sweep.log"
  tail -n 3 "$sweep.log"
  pack "$study"
done
exit $FAILED
