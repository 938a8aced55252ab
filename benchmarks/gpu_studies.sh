#!/usr/bin/env bash
# The real-photo studies that a 2-core CPU cannot afford in one session, run on a lent GPU:
#
#     bash benchmarks/gpu_studies.sh [--dry-run] [STUDY ...] [-- OVERRIDE ...]
#
# STUDY is an experiment config (default: real_roi_ops_fpn real_augment). Each study is the
# usual sweep, `rcnn-train -m experiment=STUDY`, with trainer=gpu (float16 autocast; the ROI
# operators run in float32) and hydra/launcher=local_parallel, STUDY_JOBS runs at a time on the
# one GPU (default 8; each gets cores / jobs CPU threads); OVERRIDEs are added to every sweep
# (e.g. -- seed=2 to run one seed). A run's folder is named by its overrides, trainer=gpu
# included, so the GPU runs of a study are other runs than its CPU runs (started without a
# trainer override): the archived runs under docs/ablation/STUDY/runs/STUDY whose folder names
# trainer=gpu are finished and not run again, so a study cut short by the time limit continues
# next time; the CPU runs there are left alone. (STUDY_TRAINER=cpu runs the same on the CPU, in
# folders named trainer=cpu: for trying the script, not for continuing a CPU study.)
#
# Data: the coins and galaxies are read from STUDY_DATA_DIR (default ./data); the machine needs
# scikit-image to write them, or carries them (cp -r <paths.data_dir>/{coins,galaxies}-v1 data/
# here first: 7 MB, ./data is ignored by git). Runs go to STUDY_LOG_DIR (default
# outputs/gpu_studies); after each study, however it ended, its finished runs' results.json and
# the sweep's log go to $OUT/STUDY.tgz and $OUT/STUDY.log (or ./ without $OUT); the archive:
#     mkdir -p docs/ablation/STUDY/runs && tar xzf STUDY.tgz -C docs/ablation/STUDY/runs
# then rcnn-report as docs/ablation.md says. The time limit is STUDY_BUDGET seconds for all
# studies (default 450; the first run's CUDA build, about 40 s, counts): a sweep still running
# then is stopped (its finished runs are packed, the rest continue next time; not a failure).
# Exit status: the number of studies whose sweep failed otherwise. --dry-run (first argument;
# any machine): composes each study's config with trainer=gpu and the parallel launcher and
# prints the sweep command, nothing trained. Needs the project importable, as
# benchmarks/gpu_check.sh (benchmarks/README.md: "On a lent GPU machine").
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
BUDGET=${STUDY_BUDGET:-450}
# The packaged configs are a link that git does not carry (a fresh copy lacks it).
[ -e detector/configs ] || ln -s ../configs detector/configs
FAILED=0

finished() {  # STUDY: its runs on this trainer that hold results.json (STUDY/RUN/results.json)
  (cd "$LOG/ablation" && find "$1" -mindepth 2 -maxdepth 2 -path "*trainer=$TRAINER*" \
    -name results.json)
}

pack() {  # STUDY: its finished runs' results.json and its sweep's log, into ${OUT:-.}
  local study=$1 dest=${OUT:-.} files
  files=$(finished "$study")
  cp "$LOG/ablation/$study.log" "$dest/$study.log"
  if [ -z "$files" ]; then echo "$study: no finished run to pack"; return; fi
  (cd "$LOG/ablation" && tar czf - $files) > "$dest/$study.tgz"
  echo "$study: packed $(echo "$files" | wc -l) finished runs into $dest/$study.tgz"
}

for study in "${STUDIES[@]}"; do
  sweep="$LOG/ablation/$study"
  args=(-m "experiment=$study" "trainer=$TRAINER" hydra/launcher=local_parallel
        "hydra.launcher.n_jobs=$JOBS" "paths.log_dir=$LOG" "paths.data_dir=$DATA" "${EXTRA[@]}")
  echo "== $study: $PY -m detector.cli.train ${args[*]}"
  if [ $DRY -eq 1 ]; then
    # the sweep's own overrides, without -m: the first run's config, the launcher's included
    $PY -m detector.cli.train "${args[@]:1}" --cfg job > /dev/null \
      || { echo "$study: the config does not compose"; FAILED=$((FAILED + 1)); }
    continue
  fi
  archive="docs/ablation/$study/runs/$study"
  mkdir -p "$sweep"
  for run in "$archive"/*"trainer=$TRAINER"*/; do  # finished: the sweep skips their folders
    [ -d "$run" ] && cp -rn "$run" "$sweep/"
  done
  left=$((BUDGET - SECONDS))
  if [ $left -lt 60 ]; then echo "$study: skipped, under 60 s of STUDY_BUDGET left"; continue; fi
  start=$SECONDS
  timeout "$left" $PY -m detector.cli.train "${args[@]}" > "$sweep.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && FAILED=$((FAILED + 1))
  echo "$study: exit $rc after $((SECONDS - start)) s$([ $rc -eq 124 ] && echo ' (time limit)')," \
    "$(finished "$study" | grep -c .) runs finished on trainer=$TRAINER; log $sweep.log"
  tail -n 3 "$sweep.log"
  pack "$study"
done
exit $FAILED
