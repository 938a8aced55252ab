"""detector.loading.spec: a model built from its specification without Hydra, the same
as Hydra builds it, and a specification from a file cannot run arbitrary code."""

import subprocess
import sys

import hydra
import pytest
import torch

from conftest import SPEC
from detector.loading.spec import build_model, instantiate


def _spec():
    return {**SPEC, "num_classes": 3}


def test_same_model_as_hydra_builds():
    torch.manual_seed(0)
    ours = build_model(_spec())
    torch.manual_seed(0)
    theirs = hydra.utils.instantiate(_spec(), _convert_="all")
    assert type(ours) is type(theirs)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    for key, value in ours_state.items():
        torch.testing.assert_close(value, theirs_state[key], rtol=0, atol=0, msg=key)
    assert ours.transform.min_size == 96 and ours.transform.max_size == 128


def test_partial_and_nesting():
    op = instantiate({"_target_": "ops.roi_align", "_partial_": True, "output_size": 7,
                      "sampling_ratio": 2})
    assert op.func.__name__ == "roi_align" and op.keywords == {"output_size": 7,
                                                               "sampling_ratio": 2}
    built = instantiate({"a": [{"_target_": "builtins.dict", "x": 1}]}, trust=True)
    assert built == {"a": [{"x": 1}]}


@pytest.mark.parametrize("target", ["os.system", "subprocess.run", "builtins.eval"])
def test_targets_outside_the_project_are_refused(target):
    with pytest.raises(ValueError, match=f"_target_ {target} is outside detector, ops, torch"):
        instantiate({"_target_": target, "command": "echo pwned"})


def test_unknown_target_and_keys_are_named():
    with pytest.raises(ValueError, match="_target_ detector.modeling.builders.no_such_builder: "
                                         "cannot import"):
        build_model({"_target_": "detector.modeling.builders.no_such_builder"})
    with pytest.raises(ValueError, match=r"unsupported specification keys \['_recursive_'\]"):
        build_model({**_spec(), "_recursive_": False})
    with pytest.raises(ValueError, match="needs '_target_'"):
        build_model({"num_classes": 3})
    with pytest.raises(TypeError, match="built a RoIAlign, not a GeneralizedRCNN"):
        build_model({"_target_": "ops.RoIAlign", "output_size": 7})


def test_load_needs_neither_lightning_nor_hydra(trained):
    path, _, _ = trained
    code = ("import sys, detector\n"
            f"model = detector.load({str(path)!r})\n"
            "assert model.transform.min_size == 96\n"
            "print(sorted(m for m in ('pytorch_lightning', 'lightning', 'hydra', 'omegaconf') "
            "if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
