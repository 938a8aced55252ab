"""The real-photo studies (ROI operators on coins and galaxies, C4 and FPN;
augmentation presets): each composes, sweeps what its file says, seed first,
and every run of the sweep composes with one model, schedule and optimizer;
the photo datasets' data configs build through PhotoDataModule."""

import itertools

import pytest
from hydra import compose, initialize_config_dir

from detector.training import PhotoDataModule

from test_configs import CONFIGS, _compose

STUDIES = {
    "real_roi_ops_c4": ({"seed": ["0", "1", "2"], "data": ["coins", "galaxies"],
                         "roi_op": ["pool", "warp_max", "align_avg"]},
                        "detector.modeling.builders.c4_rcnn"),
    "real_roi_ops_fpn": ({"seed": ["0", "1", "2"], "data": ["coins", "galaxies"],
                          "roi_op": ["pool", "warp_max", "align_avg"]},
                         "detector.modeling.builders.fpn_rcnn"),
    "real_augment": ({"seed": ["0", "1"], "data": ["coins", "galaxies"],
                      "augment": ["flip", "photometric", "crop", "lsj"]},
                     "detector.modeling.builders.fpn_rcnn"),
}


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_real_studies_sweep_what_they_say(tmp_path, study):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={study}"], return_hydra_config=True)
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    expected, model = STUDIES[study]
    assert params == expected and list(params)[0] == "seed"
    assert cfg.hydra.sweep.dir.endswith(f"ablation/{study}")
    runs = list(itertools.product(*params.values()))
    assert len(runs) == {"real_roi_ops_c4": 18, "real_roi_ops_fpn": 18, "real_augment": 16}[study]
    shared = set()
    for values in runs:
        overrides = [f"{k}={v}" for k, v in zip(params, values)]
        run = _compose(tmp_path, f"experiment={study}", *overrides)
        assert run.data._target_ == "detector.training.PhotoDataModule"
        assert run.data.name == dict(zip(params, values))["data"]
        assert run.model._target_ == model
        assert run.trainer.max_epochs == 50 and run.trainer.check_val_every_n_epoch == 50
        shared.add((str(run.module), run.model.backbone_width, run.trainer.max_epochs))
        if "roi_op" in params:
            assert run.roi_op.box._target_.endswith(
                "roi_pool" if values[-1] == "pool" else
                "roi_warp" if values[-1].startswith("warp") else "roi_align")
    assert len(shared) == 1  # one model width, schedule and optimizer for every run


def test_photo_data_module_rejects_an_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="data.name must be one of coins, galaxies"):
        PhotoDataModule("stars", str(tmp_path))
