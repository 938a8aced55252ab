"""Shared fixtures."""

import pytest
import pytorch_lightning as pl

from detector.training import DetectionModule, SyntheticDataModule

SPEC = {
    "_target_": "detector.builders.fpn_rcnn", "num_classes": None, "depth": 18,
    "backbone_width": 16, "norm": "bn", "trainable_stages": 5, "fpn_channels": 32,
    "representation_size": 64, "mask_channels": 32, "anchor_sizes": [16, 32, 64, 128, 256],
    "box_op": {"_target_": "ops.roi_align", "_partial_": True, "output_size": 7,
               "sampling_ratio": 2, "aligned": True},
    "transform": {"_target_": "detector.transform.ImageTransform", "min_size": 96,
                  "max_size": 128},
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A checkpoint after two training steps on tiny synthetic data, and its module."""
    root = tmp_path_factory.mktemp("load")
    data = SyntheticDataModule(str(root / "data"), num_train=4, num_val=2, image_size=(96, 128),
                               batch_size=2)
    module = DetectionModule(SPEC, optimizer="adamw", lr=1e-3, warmup_steps=1)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0,
                         default_root_dir=root)
    trainer.fit(module, data)
    path = root / "trained.ckpt"
    trainer.save_checkpoint(path)
    return path, module, data
