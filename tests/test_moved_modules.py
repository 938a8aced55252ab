"""Import paths of the layout before detector/ was laid out by role, as old
checkpoints' specifications name them, still reach the same objects through
the specification's table of moved modules; the old modules themselves are gone."""

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import detector
import ops
from detector.loading.spec import MOVED_MODULES, build_model, current_path, locate
from detector.modeling import backbones, checks, roi_heads
from detector.modeling.transform import ImageTransform
from detector.weights import fine_tune

ROOT = Path(__file__).resolve().parents[1]

OLD_PATHS = {  # written out by hand: what checkpoints of the old layout hold
    "detector.builders.fpn_rcnn": detector.fpn_rcnn,
    "detector.builders.c4_rcnn": detector.c4_rcnn,
    "detector.builders.c5_rcnn": detector.c5_rcnn,
    "detector.builders.vgg16_rcnn": detector.vgg16_rcnn,
    "detector.builders.single_level_rcnn": detector.single_level_rcnn,
    "detector.rcnn.GeneralizedRCNN": detector.GeneralizedRCNN,
    "detector.transform.ImageTransform": ImageTransform,
    "detector.backbones.ResNetC4": backbones.ResNetC4,
    "detector.backbones.resnet.ResNetRes5Head": backbones.ResNetRes5Head,
    "detector.roi_heads.box.TwoMLPHead": roi_heads.TwoMLPHead,
    "detector.validation.check_images": checks.check_images,
}


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_an_old_path_reaches_the_object_it_named(old):
    assert locate(old) is OLD_PATHS[old]


@pytest.mark.parametrize("path", ["detector.modeling.builders.fpn_rcnn", "ops.roi_align",
                                  "detector.training.DetectionModule", "torch.nn.Identity",
                                  "detector.buildersx.fpn_rcnn"])
def test_other_paths_are_left_as_they_are(path):
    assert current_path(path) == path


def test_the_old_modules_are_gone_and_the_new_ones_import():
    """(Checked on the files: an editable install of another checkout could
    still import an old module.)"""
    for old, new in MOVED_MODULES.items():
        place = ROOT / old.replace(".", "/")
        assert not place.is_dir() and not place.with_suffix(".py").exists(), old
        assert importlib.import_module(new).__file__.startswith(str(ROOT / "detector")), new


def test_a_specification_with_old_paths_builds_the_model_of_the_new_ones():
    old = {"_target_": "detector.builders.fpn_rcnn", "num_classes": 3, "depth": 18,
           "backbone_width": 8, "norm": "bn", "fpn_channels": 8, "representation_size": 16,
           "masks": False, "box_op": {"_target_": "ops.roi_pool", "_partial_": True,
                                      "output_size": 7},
           "transform": {"_target_": "detector.transform.ImageTransform", "min_size": 64,
                         "max_size": 96}}
    model = build_model(old)
    assert isinstance(model, detector.GeneralizedRCNN)
    assert isinstance(model.transform, ImageTransform)
    assert model.transform.min_size == 64
    assert model.roi_heads.box_pooler.op.func is ops.roi_pool


def test_an_unknown_old_name_is_an_error_naming_it():
    with pytest.raises(ValueError, match="detector.builders.no_such_builder"):
        locate("detector.builders.no_such_builder")


def test_fine_tunings_default_normalisation_is_the_transforms():
    """weights/ cannot import the model, so it writes ImageTransform's
    defaults out; they must agree."""
    parameters = inspect.signature(ImageTransform).parameters
    assert fine_tune.TRANSFORM_MEAN == tuple(parameters["mean"].default)
    assert fine_tune.TRANSFORM_STD == tuple(parameters["std"].default)


def _documented_modules() -> set[str]:
    texts = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), ROOT / "benchmarks" / "README.md",
             *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "configs").rglob("*.yaml")]
    return {m for path in texts for m in re.findall(r"python -m (detector[\w.]*)", path.read_text())}


def test_every_python_m_command_the_docs_name_runs():
    """Each ``python -m detector....`` the docs, benchmarks and configs name is a
    module of this tree with a command line: ``--help`` answers (one process
    runs them all, as ``python -m`` would)."""
    modules = sorted(_documented_modules())
    assert "detector.data.builders.coins" in modules  # the scan sees them
    for module in modules:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), \
            f"docs name python -m {module}, which this tree does not hold"
    script = ("import runpy, sys\n"
              "for module in sys.argv[1:]:\n"
              "    sys.argv = [module, '--help']\n"
              "    try:\n"
              "        runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
              "    except SystemExit as done:\n"
              "        assert done.code == 0, (module, done.code)\n"
              "    else:\n"
              "        raise AssertionError(f'{module} --help did not answer')\n")
    done = subprocess.run([sys.executable, "-c", script, *modules], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    for module in (m for m in modules if m.startswith("detector.data.builders.")):
        assert f"usage: python -m {module} " in done.stdout, done.stdout  # its own parser
