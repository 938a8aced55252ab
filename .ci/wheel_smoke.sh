#!/usr/bin/env bash
# The package as a user installs it: a wheel built from this checkout, installed into a fresh
# virtual environment outside it, and every console command run from an empty directory, on a
# machine with no build of the kernels yet (an empty ROI_OPS_CACHE: the first command that needs
# them compiles them, once). Nothing here can read the checkout's files.
#
# WHEEL_SMOKE_DEPS=VENV (CI sets it to its own): the dependencies (packages and their commands,
# ninja among them) are linked from that virtual environment instead of installed a second time
# (minutes of unpacking torch), where `pip install -e .` has just resolved the same requirements;
# the wheel goes in with --no-deps, nothing of the checkout's own install is linked, and
# `pip check` proves that what the wheel declares is met.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

step "build the wheel"
"${PYTHON:-python3}" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$repo"
wheel=$(ls "$work"/dist/roi_rcnn-*.whl)
"${PYTHON:-python3}" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for needed in ("detector/configs/train.yaml", "detector/configs/data/synthetic.yaml",
               "detector/configs/cli/mask_rcnn_synthetic.yaml", "ops/csrc/ops.cpp",
               "ops/csrc/cuda/roi_align_kernel.cu", "detector/cli/train.py"):
    assert needed in names, f"the wheel lacks {needed}"
assert not [n for n in names if n.startswith(("tests/", "configs/", "benchmarks/"))], names
print(f"{len(names)} files, configs and kernel sources included")
PY

step "install it into a fresh venv outside the checkout"
"${PYTHON:-python3}" -m venv "$work/venv"
if [ -n "${WHEEL_SMOKE_DEPS:-}" ]; then
  link_all() {  # link_all FROM INTO: each entry of FROM not in INTO, but the checkout's own
    for entry in "$1"/*; do
      case "$(basename "$entry")" in
        roi_rcnn-*|__editable__*|detector|ops|__pycache__|rcnn-*|activate*) continue ;;
      esac
      [ -e "$2/$(basename "$entry")" ] || ln -s "$entry" "$2/"
    done
  }
  purelib() { "$1/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"; }
  deps=$(cd "$WHEEL_SMOKE_DEPS" && pwd)
  link_all "$(purelib "$deps")" "$(purelib "$work/venv")"
  link_all "$deps/bin" "$work/venv/bin"
  "$work/venv/bin/pip" install --quiet --no-deps "$wheel"
  "$work/venv/bin/pip" check
else
  "$work/venv/bin/pip" install --quiet "$wheel" 2>&1 | grep -v "^WARNING: Location" || true
fi
export PATH="$work/venv/bin:$PATH" ROI_OPS_CACHE="$work/kernel-cache" PYTHONNOUSERSITE=1
unset PYTHONPATH
mkdir "$work/run" && cd "$work/run"
python - <<'PY'
import os, detector, ops
from ops import _build
assert "site-packages" in detector.__file__, detector.__file__
assert not _build.is_loaded() and not os.path.exists(os.environ["ROI_OPS_CACHE"]), "import compiled"
print("import detector, ops: nothing compiled;", detector.__file__)
PY

step "rcnn-explain (pure Python: no kernel build)"
rcnn-explain --image-size 800 800 --box 0 0 665 665 --stride 32 --output 7 --figure explain.png \
  > explain.txt
grep -q "worst bin edge" explain.txt
test -s explain.png && test ! -e "$ROI_OPS_CACHE"

step "rcnn-train: a few steps on the synthetic data (compiles the kernels first)"
rcnn-train experiment=smoke data.num_train=4 data.num_val=2 data.num_test=2 \
  data.image_size=[96,128] model.transform.min_size=96 model.transform.max_size=128 \
  hydra.run.dir=outputs/train 2>&1 | tee train.log
grep -q "compiling the ROI operators for this machine" train.log
! grep -q $'\r' train.log  # plain progress lines in a file, no carriage returns
test -s outputs/train/results.json && test -s outputs/train/checkpoints/last.ckpt
test -s outputs/train/curves.png && ls outputs/train/pictures/step*.png > /dev/null
test -d data && test -z "$(find "$work/venv" -name results.json -o -name '*.ckpt')"
ckpt=$(python -c "import json; print(json.load(open('outputs/train/results.json'))['checkpoint'])")

step "rcnn-evaluate the checkpoint (kernels now load from the cache)"
rcnn-evaluate ckpt_path="$ckpt" data.num_train=4 data.num_val=2 data.num_test=2 \
  data.image_size=[96,128] hydra.run.dir=outputs/evaluate 2>&1 | tee evaluate.log
! grep -q "compiling the ROI operators" evaluate.log
python - <<'PY'
import json
trained = json.load(open("outputs/train/results.json"))["metrics"]
evaluated = json.load(open("outputs/evaluate/results.json"))["metrics"]
assert evaluated == trained, (evaluated, trained)
print("evaluate == the training run's own test:", evaluated["segm"]["AP"])
PY

step "rcnn-predict on the produced checkpoint"
rcnn-predict ckpt_path="$ckpt" input="$(ls -d data/synthetic-test-*)/images" output=predicted \
  hydra.run.dir=outputs/predict
test -s predicted/predictions.json && ls predicted/*.png > /dev/null

step "rcnn-report on the produced results"
rcnn-report outputs --baseline "" | tee report.txt
test -s outputs/report.md && test -s outputs/report.png
rm outputs/train/curves.png && rcnn-report --curves outputs/train && test -s outputs/train/curves.png

step "rcnn-lightning: the packaged sample config, two steps"
rcnn-lightning fit --trainer.max_steps=2 --trainer.check_val_every_n_epoch=1 \
  --trainer.enable_progress_bar=false --data.init_args.num_train=4 \
  --data.init_args.num_val=2 --data.init_args.num_test=2 \
  --data.init_args.image_size=[96,128] --data.init_args.batch_size=2
test -s outputs/cli/checkpoints/last.ckpt

step "done: every console command ran from the installed wheel"
