"""Shared fixtures."""

import os

import pytest
import pytorch_lightning as pl
import torch

from detector.training import DetectionModule, SyntheticDataModule

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: each worker (and the commands it runs) takes one core's share
    threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1)))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)

SPEC = {
    "_target_": "detector.modeling.builders.fpn_rcnn", "num_classes": None, "depth": 18,
    "backbone_width": 16, "norm": "bn", "trainable_stages": 5, "fpn_channels": 32,
    "representation_size": 64, "mask_channels": 32, "anchor_sizes": [16, 32, 64, 128, 256],
    "box_op": {"_target_": "ops.roi_align", "_partial_": True, "output_size": 7,
               "sampling_ratio": 2, "aligned": True},
    "transform": {"_target_": "detector.modeling.transform.ImageTransform", "min_size": 96,
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


LEARNED_IMAGE_SIZE = (128, 160)
LEARNED_STEPS = 600


@pytest.fixture(scope="session")
def learned(tmp_path_factory):
    """A small Mask R-CNN that has learned the shapes (slow tests only: about
    4 minutes on 2 cores): 600 steps on 200 synthetic 128x160 images with
    medium-sized objects, the model resizing to a shorter side of 128 (factor
    1 in training). Returns the checkpoint path."""
    root = tmp_path_factory.mktemp("learned")
    pl.seed_everything(0)
    data = SyntheticDataModule(str(root / "data"), num_train=200, num_val=4, num_test=0,
                               image_size=LEARNED_IMAGE_SIZE, object_size="medium", batch_size=4)
    spec = {**SPEC, "transform": {**SPEC["transform"], "min_size": LEARNED_IMAGE_SIZE[0],
                                  "max_size": LEARNED_IMAGE_SIZE[1]}}
    module = DetectionModule(spec, optimizer="adamw", lr=2e-3, warmup_steps=50)
    trainer = pl.Trainer(max_steps=LEARNED_STEPS, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=root)
    trainer.fit(module, data)
    ckpt = root / "learned.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt
