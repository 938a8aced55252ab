#!/usr/bin/env bash
# Prepares the wheels that a lent GPU machine lacks (it has Python 3.12, its own
# torch, torchvision and Lightning, and no registry), into ./.whl (ignored by
# git), for the `run` command of benchmarks/README.md to install there:
#
#     bash benchmarks/gpu_wheels.sh        # from the repository root, with network
#
# The versions are those installed in this environment (the ones the tests
# ran with); --no-deps: each needed package is named here, one version each.
# antlr4-python3-runtime has no wheel on PyPI, so its sdist is built into one.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DEST=.whl
PACKAGES=(hydra-core omegaconf antlr4-python3-runtime pycocotools faster-coco-eval
  hydra-joblib-launcher joblib)  # the last two: hydra/launcher=local_parallel (gpu_studies.sh)
rm -rf "$DEST"
mkdir -p "$DEST"
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
  manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
for name in "${PACKAGES[@]}"; do
  version=$($PY -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  if [ "$name" = antlr4-python3-runtime ]; then  # pure Python, sdist only
    $PY -m pip wheel --no-deps -q -w "$DEST" "$name==$version"
  else
    $PY -m pip download --no-deps -q --only-binary=:all: --python-version 3.12 \
      --implementation cp "${PLATFORMS[@]}" -d "$DEST" "$name==$version"
  fi
done
ls -l "$DEST"
du -sh "$DEST"
